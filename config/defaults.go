package config

import "time"

// Default returns the configuration `elph serve --all` runs with when there
// is no file at all: SQLite under ./data, the in-memory bus, the gateway on
// the unprivileged 8443 with a self-signed certificate, module listeners on
// the seed ports but bound to loopback (reachable by a local nginx or the
// gateway only), admin on loopback.
func Default() Config {
	mod := func(prefix string, port string) Module {
		return Module{Enabled: true, Prefix: prefix, Listener: Listener{Listen: "127.0.0.1:" + port}}
	}
	return Config{
		Node: Node{
			Role:            "all",
			DataDir:         "./data",
			ShutdownTimeout: 15 * time.Second,
		},
		Log:     Log{Level: "info", Format: "text"},
		Admin:   Admin{Listener: Listener{Listen: "127.0.0.1:9090"}},
		Gateway: Gateway{Listener: Listener{Listen: ":8443"}, TLSAuto: true},
		HTTP: HTTP{
			MaxBodyBytes:      1 << 20,
			MaxHeaderBytes:    64 << 10,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			TrustedProxies:    []string{"127.0.0.1/32", "::1/128"},
		},
		Database: Database{
			Driver:          "sqlite",
			ConnMaxLifetime: 5 * time.Minute,
			MigrateOnStart:  true,
		},
		Bus:         defaultBus(),
		Blob:        Blob{Kind: "local", S3: S3{UseTLS: true, PathStyle: true}},
		Chat:        Chat{MaxMessageBytes: 16 << 10, StreamRetention: 30 * 24 * time.Hour, StreamMaxEvents: 10000},
		History:     History{Retention: 365 * 24 * time.Hour},
		Status:      defaultStatus(),
		Push:        defaultPush(),
		Addressbook: defaultAddressbook(),
		Proxy:       defaultProxy(),
		Files:       Files{MaxUploadBytes: 100 << 20, PresignTTL: 5 * time.Minute, ThumbnailSize: 320, MaxImagePixels: 40_000_000},
		SSO: SSO{
			HealthListen:    "127.0.0.1:9100",
			Issuer:          "elph",
			AccessTokenTTL:  5 * time.Minute,
			RefreshTokenTTL: 30 * 24 * time.Hour,
			SessionMaxAge:   180 * 24 * time.Hour,
			KeyRotation:     24 * time.Hour,
			InitialAdmin:    "admin",
			Lockout: Lockout{
				AccountMaxFailures: 5, AccountWindow: 15 * time.Minute,
				IPMaxFailures: 50, IPWindow: 15 * time.Minute,
			},
			LDAP: LDAP{
				ActiveDirectory: true,
				PageSize:        500,
				Timeout:         10 * time.Second,
				SyncInterval:    time.Hour,
			},
		},
		// The seed's port table (shared/DESIGN.md, "Ports and prefixes").
		Modules: Modules{
			SSO:         mod("/sso/", "8282"),
			Chat:        mod("/chat/", "3011"),
			Webclient:   mod("/", "8080"),
			History:     mod("/history/", "3000"),
			Status:      mod("/status/", "3002"),
			Push:        mod("/push/", "3003"),
			Files:       mod("/files/", "3005"),
			Miniapps:    mod("/miniapps/", "3007"),
			Addressbook: mod("/addressbook/", "4000"),
		},
	}
}
