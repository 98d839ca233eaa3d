package sso

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Bounds of group resolution: a group graph is the directory's data, and a
// cycle or a runaway hierarchy must not stall a login.
const (
	maxGroupDepth = 32
	// maxUserGroups caps the groups resolved for one user (AD's default
	// MaxPageSize, so an in-chain search fits one answer).
	maxUserGroups = 1000
	// maxIndexedMembers caps the memberships the sync holds in memory
	// (about 100 bytes each).
	maxIndexedMembers = 2_000_000
)

// adInChain is LDAP_MATCHING_RULE_IN_CHAIN: AD walks nested membership
// itself. OpenLDAP does not implement it (the filter matches nothing), so
// the generic mode walks the graph in Go instead.
const adInChain = "1.2.840.113556.1.4.1941"

// parentsFunc returns the groups dn is a member of. With allTransitive
// set, the answer already holds every nested group and needs no walking.
type parentsFunc func(ctx context.Context, dn string) (groups []string, allTransitive bool, err error)

// nestedGroups returns the DNs of every group dn belongs to, directly or
// through other groups, walking breadth first with a visited set (cycles
// end) no deeper than maxGroupDepth and no further than maxUserGroups.
func (d *Directory) nestedGroups(ctx context.Context, dn string, parents parentsFunc) ([]string, error) {
	visited := map[string]bool{normDN(dn): true}
	var out []string
	frontier := []string{dn}
	for depth := 1; len(frontier) > 0; depth++ {
		if depth > maxGroupDepth {
			d.log.Warn("ldap: groups nested deeper than the limit; the rest is ignored",
				"dn", dn, "limit", maxGroupDepth)
			break
		}
		var next []string
		for _, member := range frontier {
			groups, all, err := parents(ctx, member)
			if err != nil {
				return nil, err
			}
			for _, g := range groups {
				k := normDN(g)
				if visited[k] {
					continue
				}
				visited[k] = true
				if len(out) == maxUserGroups {
					d.log.Warn("ldap: user is in more groups than the limit; the rest is ignored",
						"dn", dn, "limit", maxUserGroups)
					return out, nil
				}
				out = append(out, g)
				if !all {
					next = append(next, g)
				}
			}
		}
		frontier = next
	}
	return out, nil
}

// adChainParents asks AD for all of a user's groups, nested ones
// included, in one search.
func (d *Directory) adChainParents(c *ldapConn) parentsFunc {
	return func(ctx context.Context, dn string) ([]string, bool, error) {
		filter := fmt.Sprintf("(&%s(member:%s:=%s))", d.groupFilter, adInChain, ldap.EscapeFilter(dn))
		groups, err := d.searchDNs(ctx, c, filter)
		return groups, true, err
	}
}

// searchParents asks the directory for dn's direct groups (groupOfNames
// member or groupOfUniqueNames uniqueMember); nestedGroups walks upwards.
func (d *Directory) searchParents(c *ldapConn) parentsFunc {
	return func(ctx context.Context, dn string) ([]string, bool, error) {
		v := ldap.EscapeFilter(dn)
		filter := fmt.Sprintf("(&%s(|(member=%s)(uniqueMember=%s)))", d.groupFilter, v, v)
		groups, err := d.searchDNs(ctx, c, filter)
		return groups, false, err
	}
}

// searchDNs returns the DNs of the groups filter matches, at most
// maxUserGroups of them.
func (d *Directory) searchDNs(ctx context.Context, c *ldapConn, filter string) ([]string, error) {
	res, err := c.Search(&ldap.SearchRequest{
		BaseDN: d.groupBase, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases,
		SizeLimit: maxUserGroups, EnforceSizeLimit: true, TimeLimit: d.timeLimit,
		Filter: filter, Attributes: []string{"1.1"}, // no attributes: the DN is all we need
	})
	if err != nil && !sizeLimited(err) {
		return nil, d.opError(ctx, "search groups", err)
	}
	if res == nil {
		return nil, nil
	}
	if err != nil {
		d.log.Warn("ldap: group search hit the size limit; the rest is ignored", "limit", maxUserGroups)
	}
	return entryDNs(res.Entries), nil
}

// memberIndex maps each member DN to the groups that list it.
type memberIndex map[string][]string

// memberIndex reads every group once, for the sync: resolving thousands of
// users then needs no further searches.
func (d *Directory) memberIndex(ctx context.Context, c *ldapConn) (memberIndex, error) {
	idx := memberIndex{}
	n := 0
	add := func(member, group string) {
		if n == maxIndexedMembers {
			d.log.Warn("ldap: more group memberships than the limit; the rest is ignored", "limit", maxIndexedMembers)
		}
		n++
		if n <= maxIndexedMembers {
			k := normDN(member)
			idx[k] = append(idx[k], group)
		}
	}
	attrs := []string{"member", "uniqueMember"}
	err := d.pagedSearch(ctx, c, "group members", d.groupBase, d.groupFilter, attrs, func(e *ldap.Entry) error {
		for _, m := range e.GetEqualFoldAttributeValues("member") {
			add(m, e.DN)
		}
		for _, m := range e.GetEqualFoldAttributeValues("uniqueMember") {
			add(stripUID(m), e.DN)
		}
		return nil
	})
	return idx, err
}

func (idx memberIndex) parents(_ context.Context, dn string) ([]string, bool, error) {
	return idx[normDN(dn)], false, nil
}

// stripUID drops the optional "#'0101'B" unique identifier of a
// uniqueMember value (RFC 4517 NameAndOptionalUID).
func stripUID(v string) string {
	if i := strings.LastIndex(v, "#'"); i > 0 && strings.HasSuffix(v, "'B") {
		return v[:i]
	}
	return v
}

// SameDN reports whether a and b name the same entry, whatever their case
// and spacing: compare group DNs (DirectoryUser.Groups against
// admin_group_dn) with it, not with string equality.
func SameDN(a, b string) bool { return normDN(a) == normDN(b) }

// normDN is a DN's comparison key: the same DN written with other case or
// spacing gives the same key.
func normDN(dn string) string {
	if p, err := ldap.ParseDN(dn); err == nil {
		return strings.ToLower(p.String())
	}
	return strings.ToLower(strings.TrimSpace(dn))
}
