package betterauth

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Header names the gateway sets on an allowed request. Every incoming header
// that starts with OwnedHeaderPrefix is removed first, whatever the outcome.
const (
	HeaderUserID    = "X-Auth-User-Id"
	HeaderUserEmail = "X-Auth-User-Email"
	HeaderUserName  = "X-Auth-User-Name"
	HeaderUserRole  = "X-Auth-User-Role"
	HeaderMethod    = "X-Auth-Method"
	HeaderKeyID     = "X-Auth-Key-Id"
	HeaderSessionID = "X-Auth-Session-Id"
	HeaderOrgID     = "X-Auth-Org-Id"
	HeaderOrgSlug   = "X-Auth-Org-Slug"
	HeaderOrgName   = "X-Auth-Org-Name"
	HeaderOrgRole   = "X-Auth-Org-Role"
	// An OAuth access token's: its client, and the scopes granted
	// (space-separated), and the token's row id.
	HeaderClientID = "X-Auth-Client-Id"
	HeaderScopes   = "X-Auth-Scopes"
	HeaderTokenID  = "X-Auth-Token-Id"

	OwnedHeaderPrefix = "X-Auth-"
)

// IsOwnedHeader reports whether a header name belongs to the gateway: it
// starts with "X-Auth-" in any letter case, with '_' standing for '-' (some
// upstream servers fold the two together, so "x_auth_user_id" must not get
// through either).
func IsOwnedHeader(name string) bool {
	const p = "x-auth-"
	if len(name) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != p[i] {
			return false
		}
	}
	return true
}

// Header is one identity header to set.
type Header struct{ Name, Value string }

// MaxHeaders is how many identity headers a decision sets at most.
const MaxHeaders = 8

// AppendHeaders appends the identity headers of an allowed decision to dst,
// in a fixed order, and returns the result. Values are already encoded with
// EncodeHeaderValue; absent values are left out, never sent empty. Pass a
// [MaxHeaders]Header array's slice to avoid allocating.
func (d Decision) AppendHeaders(dst []Header) []Header {
	if d.Reason != Allowed {
		return dst
	}
	switch {
	case d.User != nil:
		u := d.User.headers()
		dst = append(dst, Header{HeaderUserID, u.id})
		if u.email != "" {
			dst = append(dst, Header{HeaderUserEmail, u.email})
		}
		if u.name != "" {
			dst = append(dst, Header{HeaderUserName, u.name})
		}
		if u.role != "" {
			dst = append(dst, Header{HeaderUserRole, u.role})
		}
		if m := d.Member; m != nil {
			id, role := m.HeaderValues()
			dst = append(dst, Header{HeaderOrgID, id})
			if role != "" {
				dst = append(dst, Header{HeaderOrgRole, role})
			}
		}
	case d.Org != nil: // an organization's key: no user
		o := d.Org.headers()
		dst = append(dst, Header{HeaderOrgID, o.id})
		if o.slug != "" {
			dst = append(dst, Header{HeaderOrgSlug, o.slug})
		}
		if o.name != "" {
			dst = append(dst, Header{HeaderOrgName, o.name})
		}
	case d.Method == MethodOAuth: // a machine-to-machine token: the client only
	default:
		return dst
	}
	dst = append(dst, Header{HeaderMethod, d.Method.String()})
	switch d.Method {
	case MethodAPIKey:
		dst = append(dst, Header{HeaderKeyID, d.credHdr})
		if d.Usage != nil && d.Usage.HasRemaining {
			dst = append(dst, Header{HeaderKeyRemaining, strconv.FormatInt(d.Usage.Remaining, 10)})
		}
	case MethodSession:
		dst = append(dst, Header{HeaderSessionID, d.credHdr})
	case MethodOAuth:
		dst = append(dst, Header{HeaderTokenID, d.credHdr}, Header{HeaderClientID, d.clientHdr})
		if d.scopesHdr != "" {
			dst = append(dst, Header{HeaderScopes, d.scopesHdr})
		}
	}
	return dst
}

// MaxHeaderValue bounds each identity value, in bytes of the stored text,
// before encoding. Longer values are cut at a character boundary.
const MaxHeaderValue = 1024

// EncodeHeaderValue makes a stored value safe to carry in an HTTP header.
// Printable ASCII passes unchanged, except '%'; every other byte (control
// characters such as CR and LF, and the UTF-8 bytes of non-ASCII text) is
// written as %XX. Consumers decode with decodeURIComponent or
// url.PathUnescape; a value without '%' needs no decoding.
func EncodeHeaderValue(s string) string {
	if len(s) > MaxHeaderValue {
		// Back up to the start of a character, but no further than a
		// character is long: a run of stray continuation bytes (not
		// UTF-8) is cut where it is, not emptied.
		cut := MaxHeaderValue
		for cut > MaxHeaderValue-utf8.UTFMax+1 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if needsEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func needsEscape(c byte) bool { return c < 0x20 || c > 0x7e || c == '%' }
