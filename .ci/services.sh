#!/usr/bin/env bash
# Makes sure the services the tests talk to are reachable on loopback, and
# prints shell lines (export VAR=...) for the test run to eval.
#
# MariaDB: reachable as root@127.0.0.1 without a password (the development
# machines), else started if installed but stopped, else installed with
# apt-get when running as root. When none of that works it prints why; the
# MySQL half of the store tests then skips, or fails when
# ELPH_REQUIRE_SERVICES=1.
#
# versitygw (S3): installed with go install when neither PATH nor
# $(go env GOPATH)/bin has it; the blob tests start their own.
set -u

say() { printf '%s\n' "$*" >&2; }

mysql_ok() { # $1 user, $2 password
	mariadb --connect-timeout=2 -h127.0.0.1 -P3306 -u"$1" ${2:+-p"$2"} -e 'SELECT 1' >/dev/null 2>&1
}

wait_mysql() {
	for _ in $(seq 1 60); do
		if mariadb --connect-timeout=1 -e 'SELECT 1' >/dev/null 2>&1 || mysql_ok root ""; then return 0; fi
		sleep 0.5
	done
	return 1
}

ensure_mariadb() {
	if command -v mariadb >/dev/null 2>&1 && mysql_ok root ""; then
		return 0
	fi
	if [ ! -x /usr/sbin/mariadbd ]; then
		if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
			say "services: MariaDB is not installed and this user cannot install it (apt-get install mariadb-server)"
			return 1
		fi
		say "services: installing mariadb-server"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server) >/dev/null 2>&1 || {
			say "services: apt-get install mariadb-server failed"
			return 1
		}
	fi
	if ! wait_mysql_quick; then
		say "services: starting mariadbd"
		mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >/dev/null 2>&1 ||
			(/usr/sbin/mariadbd --user=mysql >/dev/null 2>&1 &)
		wait_mysql || { say "services: mariadbd did not come up"; return 1; }
	fi
	if mysql_ok root ""; then return 0; fi
	# A fresh Debian install lets root in only over the unix socket; give
	# the tests a user of their own rather than loosening root.
	if mariadb -e "CREATE USER IF NOT EXISTS 'elph_test'@'127.0.0.1' IDENTIFIED BY 'elph_test';
		GRANT ALL PRIVILEGES ON \`elph\_test\_%\`.* TO 'elph_test'@'127.0.0.1';" >/dev/null 2>&1 &&
		mysql_ok elph_test elph_test; then
		echo "export ELPH_TEST_MYSQL_DSN='elph_test:elph_test@tcp(127.0.0.1:3306)/'"
		return 0
	fi
	say "services: MariaDB runs but neither root nor elph_test can log in over TCP"
	return 1
}

wait_mysql_quick() {
	mariadb --connect-timeout=1 -e 'SELECT 1' >/dev/null 2>&1 || mysql_ok root ""
}

# ensure_slapd installs OpenLDAP's server; the tests start their own slapd
# on a free port, so the package's own instance is not needed (the Debian
# package is preseeded not to configure one).
ensure_slapd() {
	[ -x /usr/sbin/slapd ] && [ -x /usr/sbin/slapadd ] && return 0
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		say "services: slapd is not installed and this user cannot install it (apt-get install slapd ldap-utils)"
		return 1
	fi
	say "services: installing slapd"
	echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils) >/dev/null 2>&1 || {
		say "services: apt-get install slapd failed"
		return 1
	}
}

# ensure_versitygw installs the S3 server the blob tests start on a free
# port (platform/blob/blobtest). The tests look in PATH and in
# $(go env GOPATH)/bin, so that is where it goes, whatever GOBIN says. The
# first build takes a couple of minutes. The main package is cmd/versitygw:
# the module root has none to install.
VERSITYGW_PKG=github.com/versity/versitygw/cmd/versitygw@v1.8.0
ensure_versitygw() {
	command -v versitygw >/dev/null 2>&1 && return 0
	if ! command -v go >/dev/null 2>&1; then
		say "services: versitygw is not installed and there is no go to install it with (go install $VERSITYGW_PKG)"
		return 1
	fi
	local gopath bin log
	gopath=$(go env GOPATH) || return 1
	bin="${gopath%%:*}/bin" # the first entry of a GOPATH list
	[ -x "$bin/versitygw" ] && return 0
	say "services: installing versitygw into $bin (go install $VERSITYGW_PKG; a couple of minutes the first time)"
	log=$(mktemp) || return 1
	# From / so that no go.mod or go.work around here takes part.
	if ! (cd / && GOBIN="$bin" go install "$VERSITYGW_PKG") >"$log" 2>&1; then
		say "services: go install $VERSITYGW_PKG failed:"
		tail -n 20 "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

# ensure_nats installs the NATS server; the bus tests start their own on a
# free port (platform/bus/natstest), so the package's own service may stay
# stopped.
ensure_nats() {
	command -v nats-server >/dev/null 2>&1 && return 0
	[ -x /usr/sbin/nats-server ] && return 0
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		say "services: nats-server is not installed and this user cannot install it (apt-get install nats-server)"
		return 1
	fi
	say "services: installing nats-server"
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >/dev/null 2>&1 || {
		say "services: apt-get install nats-server failed"
		return 1
	}
}

if ! ensure_nats; then
	if [ "${ELPH_REQUIRE_SERVICES:-}" = 1 ]; then
		say "services: nats-server is required (ELPH_REQUIRE_SERVICES=1) but unavailable"
		exit 1
	fi
	say "services: nats-server unavailable; the NATS bus tests use a server at 127.0.0.1:4222 if one answers, else are skipped"
fi

if ! ensure_versitygw; then
	if [ "${ELPH_REQUIRE_SERVICES:-}" = 1 ]; then
		say "services: versitygw is required (ELPH_REQUIRE_SERVICES=1) but unavailable"
		exit 1
	fi
	say "services: versitygw unavailable; S3 blob tests will be skipped"
fi

if ! ensure_slapd; then
	if [ "${ELPH_REQUIRE_SERVICES:-}" = 1 ]; then
		say "services: slapd is required (ELPH_REQUIRE_SERVICES=1) but unavailable"
		exit 1
	fi
	say "services: slapd unavailable; LDAP tests will be skipped"
fi

if [ -n "${ELPH_TEST_MYSQL_DSN:-}" ]; then
	say "services: using ELPH_TEST_MYSQL_DSN from the environment"
elif ! ensure_mariadb; then
	if [ "${ELPH_REQUIRE_SERVICES:-}" = 1 ]; then
		say "services: MariaDB is required (ELPH_REQUIRE_SERVICES=1) but unavailable"
		exit 1
	fi
	say "services: MariaDB unavailable; MySQL store tests will be skipped"
fi
exit 0
