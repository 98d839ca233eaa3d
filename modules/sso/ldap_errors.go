package sso

import (
	"errors"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Active Directory explains a failed bind (LDAP result 49) with a Win32
// error code in the diagnostic message, after the word "data":
//
//	80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563
var adBindCodes = map[uint32]error{
	0x52e: ErrBadCredentials,  // ERROR_LOGON_FAILURE: wrong password
	0x525: ErrBadCredentials,  // ERROR_NO_SUCH_USER: told apart from 52e by no one
	0x530: ErrLoginNotAllowed, // ERROR_INVALID_LOGON_HOURS
	0x531: ErrLoginNotAllowed, // ERROR_INVALID_WORKSTATION
	0x532: ErrPasswordExpired, // ERROR_PASSWORD_EXPIRED
	0x533: ErrAccountDisabled, // ERROR_ACCOUNT_DISABLED
	0x701: ErrAccountExpired,  // ERROR_ACCOUNT_EXPIRED
	0x773: ErrMustChange,      // ERROR_PASSWORD_MUST_CHANGE
	0x775: ErrAccountLocked,   // ERROR_ACCOUNT_LOCKED_OUT
}

// adDataCode finds the code after "data" in an AD diagnostic message. The
// word must stand alone ("metadata 12" is not it) and be followed by
// spaces and 1 to 8 hex digits that end the token.
func adDataCode(msg string) (uint32, bool) {
	lower := strings.ToLower(msg)
	for from := 0; ; {
		i := strings.Index(lower[from:], "data")
		if i < 0 {
			return 0, false
		}
		i += from
		from = i + len("data")
		if i > 0 && adIsWord(lower[i-1]) {
			continue
		}
		j := from
		for j < len(lower) && lower[j] == ' ' {
			j++
		}
		if j == from {
			continue // "data52e" or "database"
		}
		k := j
		for k < len(lower) && adIsHex(lower[k]) {
			k++
		}
		if k == j || k-j > 8 || (k < len(lower) && adIsWord(lower[k])) {
			continue
		}
		code, err := strconv.ParseUint(lower[j:k], 16, 32)
		if err != nil {
			continue
		}
		return uint32(code), true
	}
}

func adIsHex(c byte) bool  { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
func adIsWord(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || c == '_' }

// bindFailure maps a user's failed bind to the sso error a handler shows.
// Anything not recognised is ErrBadCredentials: it must never look like
// success, and it tells a client nothing about the account.
func bindFailure(err error) error {
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultInvalidCredentials {
		return ErrBadCredentials
	}
	var msg string
	if le.Err != nil {
		msg = le.Err.Error()
	}
	if code, ok := adDataCode(msg); ok {
		if mapped, ok := adBindCodes[code]; ok {
			return mapped
		}
	}
	return ErrBadCredentials
}

// isConnError reports an error that says nothing about the request but
// that the directory could not be reached or did not answer.
func isConnError(err error) bool {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return true // not from the server: the network or the client
	}
	switch le.ResultCode {
	case ldap.ErrorNetwork, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable, ldap.LDAPResultServerDown,
		ldap.LDAPResultTimeout, ldap.LDAPResultConnectError, ldap.LDAPResultTimeLimitExceeded,
		ldap.LDAPResultOperationsError, ldap.LDAPResultProtocolError:
		return true
	}
	return false
}
