package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestNormalizeMySQL(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		want string
	}{
		{
			name: "defaults added",
			dsn:  "elph:pw@tcp(db:3306)/elph",
			want: "elph:pw@tcp(db:3306)/elph?charset=utf8mb4&collation=utf8mb4_unicode_ci&parseTime=true&readTimeout=30s&timeout=5s&writeTimeout=30s&time_zone=%27%2B00%3A00%27",
		},
		{
			name: "user choices kept, parseTime and loc forced",
			dsn:  "elph@unix(/run/mysqld/mysqld.sock)/elph?charset=utf8mb4&timeout=1s&readTimeout=2m&writeTimeout=1m&parseTime=false&loc=Local&time_zone=%27Europe%2FMoscow%27",
			want: "elph@unix(/run/mysqld/mysqld.sock)/elph?charset=utf8mb4&parseTime=true&readTimeout=2m0s&timeout=1s&writeTimeout=1m0s&time_zone=%27Europe%2FMoscow%27",
		},
		{
			name: "collation alone kept",
			dsn:  "root@tcp(127.0.0.1)/?collation=utf8mb4_bin",
			want: "root@tcp(127.0.0.1:3306)/?collation=utf8mb4_bin&parseTime=true&readTimeout=30s&timeout=5s&writeTimeout=30s&time_zone=%27%2B00%3A00%27",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := normalizeMySQL(tt.dsn)
			if err != nil {
				t.Fatalf("normalizeMySQL(%q): %v", tt.dsn, err)
			}
			if cfg.Loc != time.UTC {
				t.Errorf("loc = %v, want UTC", cfg.Loc)
			}
			if got := cfg.FormatDSN(); got != tt.want {
				t.Errorf("FormatDSN:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	if _, err := normalizeMySQL("elph:pw@tcp(db:3306"); err == nil {
		t.Error("normalizeMySQL accepted a DSN without slash")
	}
}

func TestMySQLErrors(t *testing.T) {
	d := mysqlDialect{}
	tests := []struct {
		err               error
		unique, retryable bool
	}{
		{&mysql.MySQLError{Number: 1062, Message: "Duplicate entry"}, true, false},
		{fmt.Errorf("wrapped: %w", &mysql.MySQLError{Number: 1062}), true, false},
		{&mysql.MySQLError{Number: 1213, Message: "Deadlock found"}, false, true},
		{&mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}, false, true},
		{&mysql.MySQLError{Number: 1146, Message: "Table doesn't exist"}, false, false},
		{errors.New("Error 1062: Duplicate entry"), false, false},
		{nil, false, false},
	}
	for _, tt := range tests {
		if got := d.IsUniqueViolation(tt.err); got != tt.unique {
			t.Errorf("IsUniqueViolation(%v) = %v, want %v", tt.err, got, tt.unique)
		}
		if got := d.IsRetryable(tt.err); got != tt.retryable {
			t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.retryable)
		}
	}
}

// TestOpenErrorRedacts covers the safety net for driver errors that quote
// the DSN text: the password is cut out of the message, the cause stays in
// the chain.
func TestOpenErrorRedacts(t *testing.T) {
	cause := errors.New(`bad value "s3cret" near "s3cret@tcp"`)
	err := openError(Options{Driver: DriverMySQL, DSN: "elph:s3cret@tcp(db)/elph"}, cause)
	if got, want := err.Error(), `store: open mysql "elph:***@tcp(db)/elph": bad value "***" near "***@tcp"`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !errors.Is(err, cause) {
		t.Error("cause lost from the chain")
	}
}
