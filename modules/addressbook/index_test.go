package addressbook

import (
	"fmt"
	"testing"
	"time"
)

func testContact(id, owner int64, name, dept string, numbers ...string) Contact {
	c := Contact{ID: id, OwnerID: owner, Fields: Fields{DisplayName: name, Department: dept}}
	for _, n := range numbers {
		c.Phones = append(c.Phones, Phone{Number: n, Normalized: NormalizeNumber(n)})
	}
	return c
}

// TestSearchRanking: whole words before word starts before the inside of
// words; names before other fields; numbers in any spelling; personal
// contacts only for their owner.
func TestSearchRanking(t *testing.T) {
	x := newIndex()
	for _, c := range []Contact{
		testContact(1, 0, "Ливанов Пётр", "Продажи", "+7 495 111-22-33"),
		testContact(2, 0, "Иванова Мария", "Бухгалтерия", "2001"),
		testContact(3, 0, "Иван Петров", "Связь", "2002"),
		testContact(4, 0, "Сидоров Алексей", "Отдел Иванова", "8 916 123 45 67"),
		testContact(5, 42, "Иван (личный)", "", "+7 916 765 43 21"),
		testContact(6, 0, "Ёлкин Семён", "Связь", "3003"),
	} {
		x.put(c)
	}
	ids := func(user int64, q Query) []int64 {
		if q.Limit == 0 {
			q.Limit = 50
		}
		cs, _ := x.search(user, q, map[int64]bool{})
		out := []int64{}
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	for _, tt := range []struct {
		user int64
		q    Query
		want string
	}{
		{1, Query{Text: "иван"}, "[3 2 4 1]"},    // word, word start, department word start, inside a word
		{42, Query{Text: "Иван"}, "[5 3 2 4 1]"}, // the owner sees their personal contact
		{1, Query{Text: "иван петров"}, "[3]"},   // every token must match
		{1, Query{Text: "елкин"}, "[6]"},         // ё = е
		{1, Query{Text: "ЁЛКИН"}, "[6]"},         // case
		{1, Query{Text: "elkin"}, "[6]"},         // Latin finds Cyrillic
		{1, Query{Text: "ivanova"}, "[2 4]"},     // transliterated, word start
		{1, Query{Text: "2002"}, "[3]"},          // an extension
		{1, Query{Text: "+7 (495) 111-22-33"}, "[1]"},
		{1, Query{Text: "84951112233"}, "[1]"}, // trunk prefix 8
		{1, Query{Text: "111-22"}, "[1]"},      // inside a number
		{1, Query{Text: "916 123"}, "[4]"},
		{1, Query{Text: "765"}, "[]"}, // only in another user's personal contact
		{42, Query{Text: "765 43"}, "[5]"},
		{1, Query{Text: "связь"}, "[6 3]"},
		{1, Query{Department: "связь"}, "[6 3]"},
		{42, Query{Personal: true}, "[5]"},
		{42, Query{Directory: true, Text: "иван"}, "[3 2 4 1]"},
		{1, Query{Text: "нет такого"}, "[]"},
	} {
		if got := fmt.Sprint(ids(tt.user, tt.q)); got != tt.want {
			t.Errorf("user %d %+v: %s, want %s", tt.user, tt.q, got, tt.want)
		}
	}
	// Favourites rank up among equal matches, and filter.
	cs, _ := x.search(1, Query{Text: "связь", Limit: 10}, map[int64]bool{3: true})
	if cs[0].ID != 3 || !cs[0].Favorite {
		t.Errorf("favourite first: %+v", cs[0])
	}
	cs, total := x.search(1, Query{Favorites: true, Limit: 10}, map[int64]bool{6: true})
	if total != 1 || cs[0].ID != 6 {
		t.Errorf("favourites only: %d %+v", total, cs)
	}
	// Paging.
	cs, total = x.search(1, Query{Limit: 2, Offset: 2}, nil)
	if total != 5 || len(cs) != 2 {
		t.Errorf("page: total %d, %d contacts", total, len(cs))
	}
	// Removal and replacement keep the number index right.
	x.remove(3)
	x.put(testContact(2, 0, "Иванова Мария", "Бухгалтерия", "2009"))
	if got := fmt.Sprint(ids(1, Query{Text: "2002"}), ids(1, Query{Text: "2001"}), len(x.byNumber(1, "2009"))); got != "[] [] 1" {
		t.Errorf("after changes: %s", got)
	}
}

func BenchmarkSearch100k(b *testing.B) {
	x := newIndex()
	first := []string{"Иван", "Пётр", "Мария", "Анна", "Сергей", "Ольга", "Алексей", "Елена"}
	last := []string{"Иванов", "Петров", "Сидоров", "Кузнецов", "Смирнов", "Попов", "Лебедев", "Козлов", "Новиков", "Морозов"}
	for i := range 100_000 {
		x.put(testContact(int64(i+1), 0, fmt.Sprintf("%s%d %s", last[i%10], i/80, first[i%8]), fmt.Sprintf("Отдел %d", i%300),
			fmt.Sprintf("+7 495 %07d", i), fmt.Sprint(10000+i)))
	}
	start := time.Now()
	x.rebuild()
	b.Logf("layout of 100 000 contacts built in %s", time.Since(start))
	b.ResetTimer()
	for i := range b.N {
		x.search(1, Query{Text: []string{"иванов12", "1234", "отдел 17 анна", "smirnov"}[i%4], Limit: 20}, nil)
	}
}
