package sso

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// DisabledReason values set by the directory client.
const (
	reasonDisabled = "disabled"
	reasonExpired  = "expired"
)

// userAccountControl flag ACCOUNTDISABLE.
const uacAccountDisable = 0x2

// guidText turns AD's 16-byte objectGUID into canonical UUID text. AD stores
// the GUID structure as Windows lays it out in memory: the first three
// fields (4, 2 and 2 bytes) little-endian, the last 8 bytes as they are.
func guidText(b []byte) (string, error) {
	if len(b) != 16 {
		return "", fmt.Errorf("objectGUID has %d bytes, want 16", len(b))
	}
	u := [16]byte{
		b[3], b[2], b[1], b[0],
		b[5], b[4],
		b[7], b[6],
	}
	copy(u[8:], b[8:])
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	return string(out[:]), nil
}

// fileTimeTime converts a Windows FILETIME (100 ns intervals since
// 1601-01-01 UTC), the format of accountExpires and lockoutTime.
func fileTimeTime(ft int64) time.Time {
	const epochDiff = 11644473600 // seconds from 1601 to 1970
	return time.Unix(ft/10_000_000-epochDiff, ft%10_000_000*100).UTC()
}

// adDisabled says whether an AD account may not log in, and why:
// userAccountControl's ACCOUNTDISABLE bit, or accountExpires in the past.
// A locked account (lockoutTime > 0) is not disabled: the lock lifts by
// itself, and the bind reports it.
func adDisabled(e *ldap.Entry, now time.Time) (bool, string) {
	if v := e.GetEqualFoldAttributeValue("userAccountControl"); v != "" {
		if uac, err := strconv.ParseInt(v, 10, 64); err == nil && uac&uacAccountDisable != 0 {
			return true, reasonDisabled
		}
	}
	if v := e.GetEqualFoldAttributeValue("accountExpires"); v != "" {
		// 0 and the largest int64 both mean "never".
		if ft, err := strconv.ParseInt(v, 10, 64); err == nil && ft > 0 && ft != math.MaxInt64 &&
			!fileTimeTime(ft).After(now) {
			return true, reasonExpired
		}
	}
	return false, ""
}

// directoryPhones gathers a user's numbers in their stored form
// (NormalizePhone), each once: the first kind wins, so an extension also
// listed as the work number stays an extension. A number that does not
// normalise ("ext. 12", "n/a") is left out: a guess could be someone
// else's number.
func directoryPhones(extension, work, mobile []string) []Phone {
	var out []Phone
	seen := map[string]bool{}
	for _, group := range []struct {
		kind   PhoneKind
		values []string
	}{{PhoneExtension, extension}, {PhoneWork, work}, {PhoneMobile, mobile}} {
		for _, v := range group.values {
			n, err := NormalizePhone(v)
			if err != nil || seen[n] {
				continue
			}
			seen[n] = true
			out = append(out, Phone{Number: n, Kind: group.kind})
		}
	}
	return out
}
