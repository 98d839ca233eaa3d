// Package config holds Elph's configuration: the Config type, its defaults,
// loading from a YAML file, ELPH_* environment variables and command-line
// flags (in that order of precedence, flags winning), and a validation step
// that reports every problem at once with the key it belongs to.
package config

import (
	"time"
)

// Config is the whole configuration of one Elph node. Keys are the koanf
// tags joined with dots ("database.dsn"); the environment variable for a key
// is ELPH_ followed by the key upper-cased with dots as underscores
// (ELPH_DATABASE_DSN).
type Config struct {
	Node        Node        `koanf:"node"`
	Log         Log         `koanf:"log"`
	Admin       Admin       `koanf:"admin"`
	Gateway     Gateway     `koanf:"gateway"`
	HTTP        HTTP        `koanf:"http"`
	Database    Database    `koanf:"database"`
	Bus         Bus         `koanf:"bus"`
	Blob        Blob        `koanf:"blob"`
	SSO         SSO         `koanf:"sso"`
	Chat        Chat        `koanf:"chat"`
	Files       Files       `koanf:"files"`
	History     History     `koanf:"history"`
	Status      Status      `koanf:"status"`
	Push        Push        `koanf:"push"`
	Addressbook Addressbook `koanf:"addressbook"`
	Proxy       Proxy       `koanf:"proxy"`
	Modules     Modules     `koanf:"modules"`
}

// Node says what this process is: which role it plays, which modules run and
// where it keeps its state.
type Node struct {
	// Role picks the modules: all, server, proxy or edge.
	Role string `koanf:"role"`
	// Modules, when not empty, replaces the role's module list.
	Modules []string `koanf:"modules"`
	// DataDir holds the SQLite database, local files and generated TLS keys.
	DataDir string `koanf:"data_dir"`
	// ShutdownTimeout bounds the graceful drain of HTTP and WebSockets.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// Log configures the process log.
type Log struct {
	Level  string `koanf:"level"`  // debug, info, warn, error
	Format string `koanf:"format"` // text or json
}

// Listener is a TCP listener. An empty Listen disables it.
type Listener struct {
	Listen  string `koanf:"listen"`
	TLSCert string `koanf:"tls_cert"`
	TLSKey  string `koanf:"tls_key"`
	// AllowPlaintext accepts a listener on a non-loopback address without TLS,
	// for a closed segment behind an existing TLS terminator.
	AllowPlaintext bool `koanf:"allow_plaintext"`
}

// Admin is the metrics and health listener, loopback by default.
type Admin struct {
	Listener `koanf:",squash"`
	// Pprof exposes /debug/pprof/ on the admin listener.
	Pprof bool `koanf:"pprof"`
}

// Gateway is the single entry point that mounts every module under its
// prefix (in-process in --all and server roles).
type Gateway struct {
	Listener `koanf:",squash"`
	// TLSAuto makes a self-signed certificate in <data_dir>/tls when no
	// tls_cert is given, so the gateway never speaks plaintext by accident.
	TLSAuto bool `koanf:"tls_auto"`
	// RedirectListen is a plain HTTP listener that only redirects to the
	// gateway's https address (":80" in production); "" disables it.
	RedirectListen string `koanf:"redirect_listen"`
}

// HTTP holds the limits every HTTP listener applies.
type HTTP struct {
	MaxBodyBytes      ByteSize      `koanf:"max_body_bytes"`
	MaxHeaderBytes    ByteSize      `koanf:"max_header_bytes"`
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
	IdleTimeout       time.Duration `koanf:"idle_timeout"`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed.
	TrustedProxies []string `koanf:"trusted_proxies"`
}

// Database selects and tunes the SQL store.
type Database struct {
	Driver string `koanf:"driver"` // sqlite or mysql
	// DSN: for sqlite a file path (default <data_dir>/elph.db), for mysql a
	// go-sql-driver DSN such as "elph:secret@tcp(db:3306)/elph".
	DSN             string        `koanf:"dsn" secret:"dsn"`
	MaxOpenConns    int           `koanf:"max_open_conns"`
	ConnMaxLifetime time.Duration `koanf:"conn_max_lifetime"`
	// MigrateOnStart runs pending migrations when serve starts.
	MigrateOnStart bool `koanf:"migrate_on_start"`
}

// Chat configures conversations and the per-user event stream.
type Chat struct {
	MaxMessageBytes ByteSize `koanf:"max_message_bytes"`
	// Retention removes message text older than this (a tombstone stays);
	// 0 keeps everything.
	Retention time.Duration `koanf:"retention"`
	// StreamRetention and StreamMaxEvents bound each user's replay log; a
	// client away longer gets "resync" and reloads over REST.
	StreamRetention time.Duration `koanf:"stream_retention"`
	StreamMaxEvents int           `koanf:"stream_max_events"`
	// OriginPatterns are extra browser origins allowed to open the
	// WebSocket (same-host origins always are).
	OriginPatterns []string `koanf:"origin_patterns"`
}

// Files configures uploads and downloads.
type Files struct {
	MaxUploadBytes ByteSize      `koanf:"max_upload_bytes"`
	PresignTTL     time.Duration `koanf:"presign_ttl"`
	ThumbnailSize  int           `koanf:"thumbnail_size"`
	MaxImagePixels int           `koanf:"max_image_pixels"`
}

// History configures call records.
type History struct {
	// Retention removes call records older than this; 0 keeps them.
	Retention time.Duration `koanf:"retention"`
}

// Blob selects where files (attachments, avatars) are kept.
type Blob struct {
	Kind string `koanf:"kind"` // local or s3
	// Dir is the local store's directory; "" means <data_dir>/files. It
	// needs a file system with user extended attributes (ext4, XFS).
	Dir string `koanf:"dir"`
	S3  S3     `koanf:"s3"`
}

// S3 is an S3-compatible object store (MinIO, Ceph RGW, versitygw, AWS).
type S3 struct {
	Endpoint     string `koanf:"endpoint"` // host:port, no scheme
	UseTLS       bool   `koanf:"use_tls"`
	CAFile       string `koanf:"ca_file"`
	Region       string `koanf:"region"`
	Bucket       string `koanf:"bucket"`
	AccessKey    string `koanf:"access_key"`
	SecretKey    string `koanf:"secret_key" secret:"true"`
	PathStyle    bool   `koanf:"path_style"`
	CreateBucket bool   `koanf:"create_bucket"`
}

// SSO configures accounts, logins, tokens and the directory.
type SSO struct {
	// HealthListen is the seed's separate health port for the SSO service.
	HealthListen string `koanf:"health_listen"`
	// Issuer is the "iss" of access tokens.
	Issuer string `koanf:"issuer"`
	// AccessTokenTTL is how long a signed access token is valid; revocation
	// reaches open WebSockets at once, other requests within this time.
	AccessTokenTTL time.Duration `koanf:"access_token_ttl"`
	// RefreshTokenTTL is how long a session may stay unused.
	RefreshTokenTTL time.Duration `koanf:"refresh_token_ttl"`
	// SessionMaxAge ends a session however active it is.
	SessionMaxAge time.Duration `koanf:"session_max_age"`
	// KeyRotation is how often a new signing key is made.
	KeyRotation time.Duration `koanf:"key_rotation"`
	// InitialAdmin is created on first start when there is no admin yet.
	InitialAdmin     string  `koanf:"initial_admin"`
	InitialAdminPass string  `koanf:"initial_admin_password" secret:"true"`
	Lockout          Lockout `koanf:"lockout"`
	LDAP             LDAP    `koanf:"ldap"`
}

// Lockout limits failed logins before any directory bind happens, so Elph
// never locks an Active Directory account by relaying guesses.
type Lockout struct {
	AccountMaxFailures int           `koanf:"account_max_failures"`
	AccountWindow      time.Duration `koanf:"account_window"`
	IPMaxFailures      int           `koanf:"ip_max_failures"`
	IPWindow           time.Duration `koanf:"ip_window"`
}

// LDAP connects SSO to Active Directory or another LDAP directory.
type LDAP struct {
	Enabled bool `koanf:"enabled"`
	// URL is ldaps://host:636 or ldap://host:389 (then use start_tls).
	URL                string `koanf:"url"`
	StartTLS           bool   `koanf:"start_tls"`
	CAFile             string `koanf:"ca_file"`
	InsecureSkipVerify bool   `koanf:"insecure_skip_verify"`
	BindDN             string `koanf:"bind_dn"`
	BindPassword       string `koanf:"bind_password" secret:"true"`
	BaseDN             string `koanf:"base_dn"`
	// ActiveDirectory turns on AD defaults: sAMAccountName and
	// userPrincipalName logins, disabled and expired accounts excluded,
	// nested groups through LDAP_MATCHING_RULE_IN_CHAIN, bind sub-codes.
	ActiveDirectory bool `koanf:"active_directory"`
	// UserFilter selects people; "" picks the AD or generic default.
	UserFilter string `koanf:"user_filter"`
	// LoginAttributes are matched against what the user types; empty
	// means sAMAccountName and userPrincipalName (AD) or uid.
	LoginAttributes []string `koanf:"login_attributes"`
	GroupBaseDN     string   `koanf:"group_base_dn"`
	GroupFilter     string   `koanf:"group_filter"`
	// AdminGroupDN: members (nested too) get the admin role.
	AdminGroupDN string        `koanf:"admin_group_dn"`
	PageSize     int           `koanf:"page_size"`
	Timeout      time.Duration `koanf:"timeout"`
	SyncInterval time.Duration `koanf:"sync_interval"`
}

// Module is the per-module section: whether it may run, the prefix it has
// on the gateway and its own listener.
type Module struct {
	Enabled  bool   `koanf:"enabled"`
	Prefix   string `koanf:"prefix"`
	Listener `koanf:",squash"`
}

// Modules has one section per module with an HTTP surface. A fixed struct
// (not a map) keeps every key known, so typos are reported and every key has
// an environment variable.
type Modules struct {
	SSO         Module `koanf:"sso"`
	Chat        Module `koanf:"chat"`
	Webclient   Module `koanf:"webclient"`
	History     Module `koanf:"history"`
	Status      Module `koanf:"status"`
	Push        Module `koanf:"push"`
	Files       Module `koanf:"files"`
	Miniapps    Module `koanf:"miniapps"`
	Addressbook Module `koanf:"addressbook"`
}

// ByName returns the section of a module, or nil when there is none.
func (m *Modules) ByName(name string) *Module {
	for n, mod := range m.all() {
		if n == name {
			return mod
		}
	}
	return nil
}

// Names lists the module sections in a stable order.
func (m *Modules) Names() []string {
	return []string{"sso", "chat", "webclient", "history", "status", "push", "files", "miniapps", "addressbook"}
}

func (m *Modules) all() map[string]*Module {
	return map[string]*Module{
		"sso": &m.SSO, "chat": &m.Chat, "webclient": &m.Webclient, "history": &m.History,
		"status": &m.Status, "push": &m.Push, "files": &m.Files, "miniapps": &m.Miniapps,
		"addressbook": &m.Addressbook,
	}
}
