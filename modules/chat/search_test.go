package chat

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
)

func TestSearch(t *testing.T) {
	forEachDialect(t, envOptions{}, func(t *testing.T, e *env) {
		const alice, bob, carol = 1, 2, 3
		g := e.group(t, alice, "g", bob)
		d := e.direct(t, alice, carol)
		other := e.group(t, carol, "чужая") // alice is not a member
		ids := map[string]int64{}
		for _, m := range []struct {
			name string
			conv int64
			from int64
			body string
		}{
			{"ёлка", g, bob, "Ставим Ёлка в холле"},
			{"елки", g, alice, "купил ёлки и гирлянды"},
			{"report", g, bob, "Quarterly REPORT is ready"},
			{"mixed", d, carol, "Отчёт по проекту Phoenix готов"},
			{"deleted", g, bob, "удалённая ёлочная игрушка"},
			{"hidden", g, bob, "скрытая ёлочная гирлянда"},
			{"foreign", other, carol, "ёлка в чужой группе"},
		} {
			ids[m.name] = e.send(t, m.from, m.conv, m.body).ID
		}
		e.call(t, bob, "DELETE", msgPath(g, fmt.Sprintf("/messages/%d?for=everyone", ids["deleted"])), nil).want(t, 204)
		e.call(t, alice, "DELETE", msgPath(g, fmt.Sprintf("/messages/%d?for=me", ids["hidden"])), nil).want(t, 204)
		// An edit is searched by its new text only.
		edited := e.send(t, alice, g, "старый текст").ID
		e.call(t, alice, "PATCH", msgPath(g, fmt.Sprintf("/messages/%d", edited)), map[string]any{"body": "новая формулировка"}).want(t, 200)

		search := func(user int64, query string) []int64 {
			var res SearchResult
			e.call(t, user, "GET", "/v1/search?"+query, nil).want(t, 200).decode(t, &res)
			var got []int64
			for _, m := range res.Messages {
				got = append(got, m.ID)
			}
			return got
		}
		q := func(s string) string { return "q=" + url.QueryEscape(s) }
		tests := []struct {
			name  string
			user  int64
			query string
			want  []string
		}{
			{"prefix, ё as е", alice, q("ёлк"), []string{"елки", "ёлка"}},
			{"upper case, е for ё", alice, q("ЕЛКИ"), []string{"елки"}},
			{"ё in the text", alice, q("елка"), []string{"ёлка"}},
			{"two words", alice, q("купил гирл"), []string{"елки"}},
			{"english folded", alice, q("quarterly rep"), []string{"report"}},
			{"mixed scripts", alice, q("отчет phoen"), []string{"mixed"}},
			{"one conversation", alice, q("ёлк") + fmt.Sprintf("&conversation_id=%d", d), nil},
			{"bob sees the hidden one", bob, q("ёлочн"), []string{"hidden"}},
			{"carol's other group", carol, q("ёлка"), []string{"foreign"}},
			{"old text of an edit", alice, q("старый"), nil},
			{"new text of an edit", alice, q("формулир"), []string{"edited"}},
			{"operators are words", alice, q(`"ёлка" -холл*`), []string{"ёлка"}},
		}
		ids["edited"] = edited
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var want []int64
				for _, n := range tt.want {
					want = append(want, ids[n])
				}
				if got := search(tt.user, tt.query); !slices.Equal(got, want) {
					t.Errorf("search %s as %d = %v, want %v (%v)", tt.query, tt.user, got, want, tt.want)
				}
			})
		}

		// Paging newest first.
		for i := range 5 {
			e.send(t, alice, g, fmt.Sprintf("страница номер %d", i))
		}
		var all []int64
		before := int64(0)
		for pages := 0; ; pages++ {
			var res SearchResult
			e.call(t, alice, "GET", fmt.Sprintf("/v1/search?%s&limit=2&before=%d", q("страниц"), before), nil).want(t, 200).decode(t, &res)
			for _, m := range res.Messages {
				all = append(all, m.ID)
			}
			if res.NextBefore == 0 {
				break
			}
			before = res.NextBefore
			if pages > 5 {
				t.Fatal("search pages do not end")
			}
		}
		if len(all) != 5 || !slices.IsSortedFunc(all, func(a, b int64) int { return int(b - a) }) {
			t.Errorf("paged search %v", all)
		}

		for _, bad := range []string{"", q("  "), q(`"*-+`), q("x") + "&before=-1"} {
			e.call(t, alice, "GET", "/v1/search?"+bad, nil).wantError(t, 400, "bad_request")
		}
		e.call(t, alice, "GET", "/v1/search?"+q("ёлка")+fmt.Sprintf("&conversation_id=%d", other), nil).wantError(t, 404, "not_found")
	})
}
