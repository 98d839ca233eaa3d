package config

import (
	"fmt"
	"strings"
	"time"
)

// Addressbook configures the company address book and its sources.
type Addressbook struct {
	// Accounts adds every enabled Elph account (local and synced from
	// LDAP/AD) to the directory.
	Accounts bool `koanf:"accounts"`
	// Softswitch reads the softswitch's directory database.
	Softswitch SoftswitchDirectory `koanf:"softswitch"`
	// MaxPersonal bounds the personal contacts of one user.
	MaxPersonal int `koanf:"max_personal"`
	// MaxAvatarBytes bounds an uploaded avatar.
	MaxAvatarBytes ByteSize `koanf:"max_avatar_bytes"`
}

// SoftswitchDirectory is a SQL query over the softswitch's directory
// (ECSS-10 keeps it in MySQL, port 3306; or PostgreSQL) whose columns map
// to contact fields.
type SoftswitchDirectory struct {
	Enabled bool `koanf:"enabled"`
	// Driver is mysql.
	Driver string `koanf:"driver"`
	DSN    string `koanf:"dsn" secret:"dsn"`
	// Query returns one row per person, its columns named (with AS)
	// after the contact fields they fill: id (required: stable per
	// person), first_name, middle_name, last_name, display_name,
	// organization, department, title, phone_work, phone_extension,
	// phone_mobile, phone_home, email, info. Other columns are an error,
	// so a typo does not silently drop a field.
	Query string `koanf:"query"`
	// Interval between syncs.
	Interval time.Duration `koanf:"interval"`
	// Timeout bounds one sync's query.
	Timeout time.Duration `koanf:"timeout"`
}

// SoftswitchFields are the contact fields a softswitch query's columns
// may be named after.
var SoftswitchFields = []string{"id", "first_name", "middle_name", "last_name", "display_name", "organization",
	"department", "title", "phone_work", "phone_extension", "phone_mobile", "phone_home", "email", "info"}

func defaultAddressbook() Addressbook {
	return Addressbook{
		Accounts:       true,
		Softswitch:     SoftswitchDirectory{Driver: "mysql", Interval: 15 * time.Minute, Timeout: time.Minute},
		MaxPersonal:    5000,
		MaxAvatarBytes: 5 << 20,
	}
}

func (a *Addressbook) validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: "addressbook." + key, Message: fmt.Sprintf(format, args...)})
	}
	if a.MaxPersonal < 0 || a.MaxPersonal > 1_000_000 {
		add("max_personal", "%d is outside 0..1000000", a.MaxPersonal)
	}
	checkSize(add, "max_avatar_bytes", a.MaxAvatarBytes, 1<<10, 50<<20)
	s := a.Softswitch
	checkDuration(add, "softswitch.interval", s.Interval, time.Minute, 7*24*time.Hour)
	checkDuration(add, "softswitch.timeout", s.Timeout, time.Second, time.Hour)
	if !s.Enabled {
		return ps
	}
	if s.Driver != "mysql" {
		add("softswitch.driver", "%q is not supported; use mysql", s.Driver)
	}
	if s.DSN == "" {
		add("softswitch.dsn", "is required when softswitch.enabled is true, e.g. reader:secret@tcp(ecss:3306)/ecss")
	}
	if q := strings.TrimSpace(strings.ToLower(s.Query)); !strings.HasPrefix(q, "select") && !strings.HasPrefix(q, "with") {
		add("softswitch.query", "must be a SELECT returning one row per person")
	}
	return ps
}
