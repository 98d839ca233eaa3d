package addressbook

import (
	"cmp"
	"slices"
)

// merge builds a directory contact from what its sources say: for each
// field the first source (by precedence: accounts, softswitch, csv; then
// by external id) that has it wins; phones, e-mails and messengers are
// the union, in that order, without duplicates. It also returns the
// linked account (the first record that has one) and the sources.
func merge(records []Record) (f Fields, userID int64, sources []string) {
	rs := slices.Clone(records)
	slices.SortFunc(rs, func(a, b Record) int {
		return cmp.Or(cmp.Compare(sourceRank[a.Source], sourceRank[b.Source]), cmp.Compare(a.ExternalID, b.ExternalID))
	})
	f.Phones, f.Emails, f.Messengers = []Phone{}, []string{}, []Messenger{}
	first := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	for _, r := range rs {
		if !slices.Contains(sources, r.Source) {
			sources = append(sources, r.Source)
		}
		if userID == 0 {
			userID = r.UserID
		}
		first(&f.DisplayName, r.DisplayName)
		first(&f.FirstName, r.FirstName)
		first(&f.MiddleName, r.MiddleName)
		first(&f.LastName, r.LastName)
		first(&f.Organization, r.Organization)
		first(&f.Department, r.Department)
		first(&f.Title, r.Title)
		first(&f.Info, r.Info)
		for _, p := range r.Phones {
			if !slices.ContainsFunc(f.Phones, func(q Phone) bool { return q.Normalized == p.Normalized }) && len(f.Phones) < MaxPhones {
				f.Phones = append(f.Phones, p)
			}
		}
		for _, e := range r.Emails {
			if !slices.Contains(f.Emails, e) && len(f.Emails) < MaxEmails {
				f.Emails = append(f.Emails, e)
			}
		}
		for _, m := range r.Messengers {
			if !slices.Contains(f.Messengers, m) && len(f.Messengers) < MaxMessengers {
				f.Messengers = append(f.Messengers, m)
			}
		}
	}
	return f, userID, sources
}
