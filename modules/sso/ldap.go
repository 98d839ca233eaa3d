package sso

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/elph-server/elph/config"
)

// Defaults and bounds of the directory client.
const (
	defaultLDAPPageSize = 500
	defaultLDAPTimeout  = 10 * time.Second
	// maxLoginLength bounds what is put into a filter; no real login is
	// longer.
	maxLoginLength = 256
	// loginSizeLimit: two entries are enough to know a login is ambiguous.
	loginSizeLimit = 2
)

// Filters used when the configuration leaves them empty.
const (
	adUserFilter       = "(&(objectCategory=person)(objectClass=user))"
	adGroupFilter      = "(objectClass=group)"
	genericUserFilter  = "(objectClass=inetOrgPerson)"
	genericGroupFilter = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
)

// ldapAttrName is an LDAP attribute description (RFC 4512 keystring or OID);
// login attributes are put into filters unescaped, so they must be one.
var ldapAttrName = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+)$`)

// Directory is what the login flow and the sync use to reach Active
// Directory or another LDAP directory. It holds no connection: each call
// dials, binds, does its work and closes, so a directory restart or a
// failover behind a name needs no recovery logic here.
type Directory struct {
	cfg      config.LDAP // BindPassword is in here: never log cfg
	log      *slog.Logger
	tls      *tls.Config // nil when the connection is not encrypted
	timeout  time.Duration
	pageSize uint32
	// timeLimit is the server-side time limit of searches, in seconds.
	timeLimit int

	ad          bool
	userFilter  string
	groupFilter string
	groupBase   string
	loginAttrs  []string
	// loginAttr becomes DirectoryUser.Login; idAttr its ExternalID.
	loginAttr string
	idAttr    string
	// domain is the DNS domain of BaseDN, so "user@domain" is accepted for
	// a user whose UPN has another suffix.
	domain string

	// userAttrs is what is read of a user; checkAttrs what Authenticate
	// needs before it lets anyone try a password.
	userAttrs  []string
	checkAttrs []string
	groupAttrs []string

	now func() time.Time
}

// NewDirectory checks cfg, loads its CA file and prepares filters and
// attribute lists. It does not connect: the directory may be down when Elph
// starts.
func NewDirectory(cfg config.LDAP, log *slog.Logger) (*Directory, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Directory{
		cfg:       cfg,
		log:       log,
		timeout:   cfg.Timeout,
		ad:        cfg.ActiveDirectory,
		groupBase: cfg.GroupBaseDN,
		now:       time.Now,
	}
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		bad("url: %v", err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps" || u.Hostname() == "":
		bad("url %q is not an ldap:// or ldaps:// URL with a host", cfg.URL)
	case u.Scheme == "ldaps" && cfg.StartTLS:
		bad("start_tls cannot be used on an ldaps:// connection")
	case u.Scheme == "ldap" && !cfg.StartTLS && !config.IsLoopback(u.Hostname()):
		bad("url %q would send passwords in clear: use ldaps:// or start_tls", cfg.URL)
	}
	if err == nil && (u.Scheme == "ldaps" || cfg.StartTLS) {
		d.tls, err = ldapTLSConfig(cfg, u.Hostname())
		if err != nil {
			bad("%v", err)
		}
		if cfg.InsecureSkipVerify {
			log.Warn("ldap: insecure_skip_verify is set: the directory's certificate is not checked, "+
				"so anyone on the path can read passwords", "url", cfg.URL)
		}
	}

	if _, err := ldap.ParseDN(cfg.BaseDN); err != nil || strings.TrimSpace(cfg.BaseDN) == "" {
		bad("base_dn %q is not a DN", cfg.BaseDN)
	}
	for _, kv := range [][2]string{{"group_base_dn", cfg.GroupBaseDN}, {"admin_group_dn", cfg.AdminGroupDN}} {
		if _, err := ldap.ParseDN(kv[1]); kv[1] != "" && err != nil {
			bad("%s %q is not a DN", kv[0], kv[1])
		}
	}
	if (cfg.BindDN == "") != (cfg.BindPassword == "") {
		bad("bind_dn and bind_password must be given together")
	}

	d.userFilter, d.groupFilter = cfg.UserFilter, cfg.GroupFilter
	d.loginAttrs = cfg.LoginAttributes
	if d.ad {
		d.loginAttr, d.idAttr = "sAMAccountName", "objectGUID"
		d.userFilter = ldapDefault(d.userFilter, adUserFilter)
		d.groupFilter = ldapDefault(d.groupFilter, adGroupFilter)
		if len(d.loginAttrs) == 0 {
			d.loginAttrs = []string{"sAMAccountName", "userPrincipalName"}
		}
	} else {
		d.idAttr = "entryUUID" // operational: only returned when asked for
		d.userFilter = ldapDefault(d.userFilter, genericUserFilter)
		d.groupFilter = ldapDefault(d.groupFilter, genericGroupFilter)
		if len(d.loginAttrs) == 0 {
			d.loginAttrs = []string{"uid"}
		}
		d.loginAttr = d.loginAttrs[0]
	}
	for _, a := range d.loginAttrs {
		if !ldapAttrName.MatchString(a) {
			bad("login attribute %q is not an attribute name", a)
		}
	}
	for _, kv := range [][2]string{{"user_filter", d.userFilter}, {"group_filter", d.groupFilter}} {
		if _, err := ldap.CompileFilter(kv[1]); err != nil {
			bad("%s %q: %v", kv[0], kv[1], err)
		}
	}
	d.groupBase = ldapDefault(d.groupBase, cfg.BaseDN)

	switch {
	case cfg.PageSize == 0:
		d.pageSize = defaultLDAPPageSize
	case cfg.PageSize < 0 || cfg.PageSize > 10000:
		bad("page_size %d is outside 1..10000", cfg.PageSize)
	default:
		d.pageSize = uint32(cfg.PageSize)
	}
	switch {
	case cfg.Timeout == 0:
		d.timeout = defaultLDAPTimeout
	case cfg.Timeout < 0:
		bad("timeout %s is negative", cfg.Timeout)
	}
	d.timeLimit = max(1, int((d.timeout+time.Second-1)/time.Second))

	if len(problems) > 0 {
		return nil, fmt.Errorf("ldap configuration: %w", errors.Join(problems...))
	}

	d.domain = dnsDomain(cfg.BaseDN)
	d.checkAttrs = attrList(append([]string{d.loginAttr}, d.loginAttrs...))
	if d.ad {
		d.checkAttrs = attrList(append(d.checkAttrs, "userAccountControl", "accountExpires"))
	}
	d.userAttrs = attrList(append(slices.Clone(d.checkAttrs),
		"userPrincipalName", d.idAttr, "displayName", "cn", "mail", "department", "departmentNumber",
		"title", "ipPhone", "telephoneNumber", "mobile"))
	d.groupAttrs = []string{"cn", d.idAttr}
	return d, nil
}

// attrList drops repeated attribute names (they are case-insensitive).
func attrList(attrs []string) []string {
	out := attrs[:0:0]
	for _, a := range attrs {
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, a) }) {
			out = append(out, a)
		}
	}
	return out
}

// ldapDefault returns s, or def when s is empty.
func ldapDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ldapTLSConfig trusts the system roots plus cfg.CAFile (an internal CA is the
// usual case for a domain controller).
func ldapTLSConfig(cfg config.LDAP, host string) (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", cfg.CAFile)
		}
	}
	return &tls.Config{
		RootCAs:            pool,
		ServerName:         host,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: cfg.InsecureSkipVerify, //nolint:gosec // only when configured, with a warning
	}, nil
}

// dnsDomain turns "OU=x,DC=corp,DC=example" into "corp.example".
func dnsDomain(base string) string {
	dn, err := ldap.ParseDN(base)
	if err != nil {
		return ""
	}
	var labels []string
	for _, rdn := range dn.RDNs {
		for _, a := range rdn.Attributes {
			if strings.EqualFold(a.Type, "dc") {
				labels = append(labels, a.Value)
			}
		}
	}
	return strings.ToLower(strings.Join(labels, "."))
}

// ldapConn is one bound connection of a Directory call.
type ldapConn struct {
	*ldap.Conn
	stop func() bool
}

func (c *ldapConn) close() {
	c.stop()
	c.Conn.Close()
}

// connect dials the directory, secures the connection and binds as the
// service account. Cancelling ctx closes the connection, which ends any
// operation in flight.
func (d *Directory) connect(ctx context.Context) (*ldapConn, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ldap: connect: %w", context.Cause(ctx))
	}
	dialer := &net.Dialer{Timeout: d.timeout}
	if dl, ok := ctx.Deadline(); ok {
		dialer.Deadline = dl
	}
	lc, err := ldap.DialURL(d.cfg.URL, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(d.tls))
	if err != nil {
		return nil, d.opError(ctx, "connect to "+d.cfg.URL, err)
	}
	lc.SetTimeout(d.timeout)
	c := &ldapConn{Conn: lc, stop: context.AfterFunc(ctx, func() { lc.Close() })}
	if d.cfg.StartTLS {
		if err := lc.StartTLS(d.tls); err != nil {
			c.close()
			return nil, d.opError(ctx, "StartTLS with "+d.cfg.URL, err)
		}
	}
	if err := d.bindService(ctx, c); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// bindService authenticates c as the service account (or anonymously when
// none is configured).
func (d *Directory) bindService(ctx context.Context, c *ldapConn) error {
	var err error
	if d.cfg.BindDN == "" {
		err = c.UnauthenticatedBind("")
	} else {
		err = c.Bind(d.cfg.BindDN, d.cfg.BindPassword)
	}
	if err == nil {
		return nil
	}
	if ldap.IsErrorAnyOf(err, ldap.LDAPResultInvalidCredentials, ldap.LDAPResultInappropriateAuthentication,
		ldap.LDAPResultInsufficientAccessRights, ldap.LDAPResultUnwillingToPerform) {
		// Not a user's mistake: every login fails until an operator fixes
		// the configuration, so say so loudly.
		d.log.Error("ldap: the directory rejects the service account; check sso.ldap.bind_dn and sso.ldap.bind_password",
			"bind_dn", d.cfg.BindDN, "err", err)
		return fmt.Errorf("%w: the directory rejects the service account %q (check bind_dn and bind_password): %w",
			ErrDirectoryDown, d.cfg.BindDN, err)
	}
	return d.opError(ctx, "service bind", err)
}

// opError reports a failed directory operation: the caller's cancellation
// as such, anything else as the directory being unavailable.
func (d *Directory) opError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("ldap: %s: %w", op, context.Cause(ctx))
	}
	return fmt.Errorf("%w: %s: %w", ErrDirectoryDown, op, err)
}

// Ping binds as the service account: the readiness check.
func (d *Directory) Ping(ctx context.Context) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	c.close()
	return nil
}

// Authenticate checks login and password against the directory and returns
// the person. login may be any of the login attributes, and on Active
// Directory also DOMAIN\user or user@<domain of base_dn>.
//
// Failures are ErrBadCredentials (also for unknown and ambiguous logins),
// the account states ErrAccountDisabled, ErrAccountExpired,
// ErrAccountLocked, ErrPasswordExpired, ErrMustChange and
// ErrLoginNotAllowed, or ErrDirectoryDown. The password never appears in an
// error or a log.
func (d *Directory) Authenticate(ctx context.Context, login, password string) (DirectoryUser, error) {
	// An empty password makes a simple bind "unauthenticated", which
	// servers answer with success: refuse it before anything is sent.
	if password == "" {
		return DirectoryUser{}, fmt.Errorf("ldap: empty password: %w", ErrBadCredentials)
	}
	login = strings.TrimSpace(login)
	if !plausibleDirectoryLogin(login) {
		return DirectoryUser{}, fmt.Errorf("ldap: malformed login: %w", ErrBadCredentials)
	}

	c, err := d.connect(ctx)
	if err != nil {
		return DirectoryUser{}, err
	}
	defer c.close()

	e, err := d.findLogin(ctx, c, login)
	if err != nil {
		return DirectoryUser{}, err
	}
	if err := c.Bind(e.DN, password); err != nil {
		if ctx.Err() != nil || isConnError(err) {
			return DirectoryUser{}, d.opError(ctx, "bind as user", err)
		}
		return DirectoryUser{}, fmt.Errorf("ldap: bind as %s: %w (%w)", e.DN, bindFailure(err), err)
	}
	// A disabled or expired account is refused only after its password was
	// proven, so the answer tells a guesser nothing about the account. AD
	// itself refuses such a bind (data 533 / 701, mapped above); this
	// catches directories that keep the AD attributes without enforcing
	// them.
	if d.ad {
		switch disabled, reason := adDisabled(e, d.now()); {
		case disabled && reason == reasonExpired:
			return DirectoryUser{}, fmt.Errorf("ldap: %s: %w", e.DN, ErrAccountExpired)
		case disabled:
			return DirectoryUser{}, fmt.Errorf("ldap: %s: %w", e.DN, ErrAccountDisabled)
		}
	}

	// The person may not read their own entry: read it as the service.
	if err := d.bindService(ctx, c); err != nil {
		return DirectoryUser{}, err
	}
	res, err := c.Search(&ldap.SearchRequest{
		BaseDN: e.DN, Scope: ldap.ScopeBaseObject, DerefAliases: ldap.NeverDerefAliases,
		SizeLimit: 1, EnforceSizeLimit: true, TimeLimit: d.timeLimit,
		Filter: "(objectClass=*)", Attributes: d.userAttrs,
	})
	if err != nil {
		return DirectoryUser{}, d.opError(ctx, "read user", err)
	}
	if len(res.Entries) != 1 {
		return DirectoryUser{}, fmt.Errorf("%w: read user %s: got %d entries", ErrDirectoryDown, e.DN, len(res.Entries))
	}
	u := d.toUser(res.Entries[0])
	var parents parentsFunc
	if d.ad {
		parents = d.adChainParents(c)
	} else {
		parents = d.searchParents(c)
	}
	if u.Groups, err = d.nestedGroups(ctx, u.DN, parents); err != nil {
		return DirectoryUser{}, err
	}
	return u, nil
}

// plausibleDirectoryLogin rejects what no login attribute holds before it
// reaches a filter: nothing, control characters (NUL among them) or a
// novel.
func plausibleDirectoryLogin(login string) bool {
	if login == "" || len(login) > maxLoginLength || !utf8.ValidString(login) {
		return false
	}
	for _, r := range login {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// loginCandidates lists the values login may stand for: itself, the name
// in DOMAIN\name (the domain is not checked: the search is bounded by
// base_dn anyway), and the name in name@domain when domain is the DNS
// domain of base_dn (AD accepts sAMAccountName@domain as an implicit UPN).
func loginCandidates(login, domain string) []string {
	out := []string{login}
	add := func(s string) {
		for _, o := range out {
			if strings.EqualFold(o, s) {
				return
			}
		}
		out = append(out, s)
	}
	if dom, name, ok := strings.Cut(login, `\`); ok && dom != "" && name != "" && !strings.ContainsAny(name, `\@`) {
		add(name)
	}
	if i := strings.LastIndexByte(login, '@'); i > 0 && i < len(login)-1 && domain != "" &&
		strings.EqualFold(login[i+1:], domain) && !strings.Contains(login[:i], `\`) {
		add(login[:i])
	}
	return out
}

// loginFilter matches any login attribute against any candidate, within
// the user filter. Every value is escaped: a login is never a filter.
func (d *Directory) loginFilter(login string) string {
	var b strings.Builder
	b.WriteString("(&")
	b.WriteString(d.userFilter)
	b.WriteString("(|")
	for _, a := range d.loginAttrs {
		for _, v := range loginCandidates(login, d.domain) {
			fmt.Fprintf(&b, "(%s=%s)", a, ldap.EscapeFilter(v))
		}
	}
	b.WriteString("))")
	return b.String()
}

// findLogin returns the one entry login names; none or several are
// ErrBadCredentials, so a client cannot tell them from a wrong password.
func (d *Directory) findLogin(ctx context.Context, c *ldapConn, login string) (*ldap.Entry, error) {
	res, err := c.Search(&ldap.SearchRequest{
		BaseDN: d.cfg.BaseDN, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases,
		SizeLimit: loginSizeLimit, EnforceSizeLimit: true, TimeLimit: d.timeLimit,
		Filter: d.loginFilter(login), Attributes: d.checkAttrs,
	})
	if err != nil && !sizeLimited(err) {
		return nil, d.opError(ctx, "search login", err)
	}
	if res == nil {
		res = &ldap.SearchResult{}
	}
	switch {
	case len(res.Entries) == 0:
		return nil, fmt.Errorf("ldap: no entry for the login: %w", ErrBadCredentials)
	case len(res.Entries) > 1 || sizeLimited(err):
		// Someone must fix the directory; name what collides, never the
		// password.
		d.log.Warn("ldap: a login matches several directory entries, so nobody can log in with it",
			"login", login, "login_attributes", matchedAttrs(res.Entries, d.loginAttrs, loginCandidates(login, d.domain)),
			"dns", entryDNs(res.Entries))
		return nil, fmt.Errorf("ldap: login is ambiguous: %w", ErrBadCredentials)
	}
	return res.Entries[0], nil
}

// sizeLimited reports a search cut short by its size limit (by the server,
// or by the client when a server ignores the limit).
func sizeLimited(err error) bool {
	return errors.Is(err, ldap.ErrSizeLimitExceeded) || ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded)
}

// matchedAttrs names the login attributes through which the candidates
// matched the entries.
func matchedAttrs(entries []*ldap.Entry, attrs, candidates []string) []string {
	var out []string
	for _, a := range attrs {
	entries:
		for _, e := range entries {
			for _, v := range e.GetEqualFoldAttributeValues(a) {
				for _, c := range candidates {
					if strings.EqualFold(v, c) {
						out = append(out, a)
						break entries
					}
				}
			}
		}
	}
	return out
}

func entryDNs(entries []*ldap.Entry) []string {
	dns := make([]string, len(entries))
	for i, e := range entries {
		dns[i] = e.DN
	}
	return dns
}

// Users streams every person matching the user filter, disabled ones too
// (with Disabled set) so the sync can disable them. It pages through the
// directory, calls fn for each user and stops at fn's first error or when
// ctx ends.
func (d *Directory) Users(ctx context.Context, fn func(DirectoryUser) error) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()

	var parents parentsFunc
	if d.ad {
		// The in-chain searches get a connection of their own: a paged
		// search's state is per connection on some servers.
		gc, err := d.connect(ctx)
		if err != nil {
			return err
		}
		defer gc.close()
		parents = d.adChainParents(gc)
	} else {
		// One pass over the groups beats a search per user and level.
		idx, err := d.memberIndex(ctx, c)
		if err != nil {
			return err
		}
		parents = idx.parents
	}
	return d.pagedSearch(ctx, c, "users", d.cfg.BaseDN, d.userFilter, d.userAttrs, func(e *ldap.Entry) error {
		u := d.toUser(e)
		var err error
		if u.Groups, err = d.nestedGroups(ctx, u.DN, parents); err != nil {
			return err
		}
		return fn(u)
	})
}

// Groups streams every group matching the group filter under group_base_dn
// (base_dn when unset).
func (d *Directory) Groups(ctx context.Context, fn func(DirectoryGroup) error) error {
	c, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	return d.pagedSearch(ctx, c, "groups", d.groupBase, d.groupFilter, d.groupAttrs, func(e *ldap.Entry) error {
		return fn(DirectoryGroup{DN: e.DN, ExternalID: d.externalID(e), Name: ldapGroupName(e)})
	})
}

// pagedSearch runs a subtree search page by page (RFC 2696), calling fn for
// every entry. Only one page is held in memory.
func (d *Directory) pagedSearch(ctx context.Context, c *ldapConn, what, base, filter string, attrs []string,
	fn func(*ldap.Entry) error,
) error {
	paging := ldap.NewControlPaging(d.pageSize)
	req := &ldap.SearchRequest{
		BaseDN: base, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases,
		TimeLimit: d.timeLimit, Filter: filter, Attributes: attrs, Controls: []ldap.Control{paging},
	}
	for {
		res, err := c.Search(req)
		if err != nil {
			return d.opError(ctx, "search "+what, err)
		}
		for _, e := range res.Entries {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("ldap: search %s: %w", what, context.Cause(ctx))
			}
			if err := fn(e); err != nil {
				// The connection is closed next, which also frees the
				// server's paging state: no need to abandon the search.
				return err
			}
		}
		next, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if !ok || len(next.Cookie) == 0 {
			return nil
		}
		paging.SetCookie(next.Cookie)
	}
}

// toUser reads a user entry.
func (d *Directory) toUser(e *ldap.Entry) DirectoryUser {
	attr := e.GetEqualFoldAttributeValue
	u := DirectoryUser{
		DN:          e.DN,
		ExternalID:  d.externalID(e),
		Login:       attr(d.loginAttr),
		UPN:         attr("userPrincipalName"),
		DisplayName: firstNonBlank(attr("displayName"), attr("cn"), attr(d.loginAttr)),
		Email:       attr("mail"),
		Department:  firstNonBlank(attr("department"), attr("departmentNumber")),
		Title:       attr("title"),
		Phones: directoryPhones(
			e.GetEqualFoldAttributeValues("ipPhone"),
			e.GetEqualFoldAttributeValues("telephoneNumber"),
			e.GetEqualFoldAttributeValues("mobile"),
		),
	}
	if d.ad {
		u.Disabled, u.DisabledReason = adDisabled(e, d.now())
	}
	return u
}

// externalID is the entry's stable id in canonical text.
func (d *Directory) externalID(e *ldap.Entry) string {
	if !d.ad {
		return strings.ToLower(e.GetEqualFoldAttributeValue("entryUUID"))
	}
	raw := e.GetEqualFoldRawAttributeValue("objectGUID")
	id, err := guidText(raw)
	if err != nil {
		if len(raw) > 0 {
			d.log.Warn("ldap: entry has a malformed objectGUID", "dn", e.DN, "err", err)
		}
		return ""
	}
	return id
}

func ldapGroupName(e *ldap.Entry) string {
	if cn := e.GetEqualFoldAttributeValue("cn"); cn != "" {
		return cn
	}
	// Fall back to the value of the first RDN.
	if dn, err := ldap.ParseDN(e.DN); err == nil && len(dn.RDNs) > 0 && len(dn.RDNs[0].Attributes) > 0 {
		return dn.RDNs[0].Attributes[0].Value
	}
	return e.DN
}

func firstNonBlank(values ...string) string {
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}
