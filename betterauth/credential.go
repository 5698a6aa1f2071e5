package betterauth

import (
	"net/textproto"
	"strings"
	"unicode/utf8"
)

// Source is where a credential was found.
type Source uint8

// Sources, in the order the Extractor tries them.
const (
	SourceNone         Source = iota
	SourceAPIKeyHeader        // x-api-key (or a configured name)
	SourceBearer              // Authorization: Bearer
	SourceCookie              // Better-Auth's session cookie
)

// Kind is what a credential is taken to be, and so which tables its Lookup
// reads: a set of the table kinds KindAPIKey, KindSession and KindOAuth, or
// KindInvalid. Its value is part of the cache's keys (also in Redis): the
// values must not change.
type Kind uint8

// Kinds.
const (
	KindNone Kind = 0
	// KindAPIKey is an API key.
	KindAPIKey Kind = 1
	// KindSession is a Better-Auth session token, signed ("token.signature")
	// or, from a bearer header, raw.
	KindSession Kind = 2
	// KindEither is a raw bearer value shaped like a session token that could
	// also be an API key; it is looked up as both in one round trip.
	KindEither = KindAPIKey | KindSession
	// KindInvalid is a value that cannot be valid in any form (too long, or
	// sent more than once); it is denied without a lookup.
	KindInvalid Kind = 4
	// KindOAuth is an opaque OAuth access token of Better-Auth's OAuth
	// provider (or of its legacy mcp and oidcProvider plugins). A raw
	// bearer value that may be one is looked up as one too, alongside
	// the other kinds it may be, in the same round trip.
	KindOAuth Kind = 8
	// KindJWT is a JWT access token of Better-Auth's OAuth provider: it is
	// verified offline, then the rows it names are read.
	KindJWT Kind = 16
)

// Reads reports whether a lookup of kind k reads the tables of kind t.
func (k Kind) Reads(t Kind) bool { return k != KindInvalid && k&t != 0 }

// MaxCredentialLen bounds a presented credential, in bytes. Better-Auth's
// keys are at most a 32-character prefix plus the configured key length, and
// session tokens are 32 characters plus a 44-character signature.
const MaxCredentialLen = 512

// MaxJWTLen bounds a JWT access token, in bytes: Better-Auth's are under
// 1 KiB, but custom claims can add to them.
const MaxJWTLen = 8 << 10

// Credential is the one credential evaluated for a request. Value is a secret:
// never log it; use Fingerprint. An OAuth token's Value is the token without
// the configured prefix, as Better-Auth looks it up.
type Credential struct {
	Kind   Kind
	Source Source
	// Name is the header or cookie name it was read from.
	Name  string
	Value string
}

// HeaderGetter returns every value of a header. name is in canonical form
// ("X-Api-Key"); http.Header satisfies it through HTTPHeader.
type HeaderGetter interface {
	Values(name string) []string
}

// HTTPHeader adapts a net/http header map without re-canonicalising names.
type HTTPHeader map[string][]string

// Values implements HeaderGetter.
func (h HTTPHeader) Values(name string) []string { return h[name] }

// ExtractorConfig says where credentials are read from.
type ExtractorConfig struct {
	// APIKeyHeaders are read first, in order. Default: X-Api-Key.
	APIKeyHeaders []string
	// APIKeyPrefixes, when set, mark a bearer value as an API key.
	APIKeyPrefixes []string
	// RequireSignature rejects raw (unsigned) session tokens in bearer
	// headers, as Better-Auth's bearer({requireSignature: true}) does.
	RequireSignature bool
	// CookieNames are the session cookie names, most specific first.
	// Default: SessionCookieNames(CookiePrefix, "").
	CookieNames []string
	// CookiePrefix is Better-Auth's advanced.cookiePrefix; it names the
	// cookie cache (<prefix>.session_data) removed with the session cookie.
	// Default: DefaultCookiePrefix.
	CookiePrefix string
	// OAuth says bearer values may be opaque OAuth access tokens: those
	// starting with OAuthPrefix (the provider's prefix.opaqueAccessToken)
	// are, and raw values shaped like a session token are looked up as
	// one too.
	OAuth       bool
	OAuthPrefix string
}

// Extractor finds the one credential of a request, and the credentials a
// front end must remove before the request goes on.
type Extractor struct {
	apiKeyHeaders  []string
	apiKeyPrefixes []string
	requireSig     bool
	oauth          Kind // KindOAuth when bearer values may be OAuth tokens
	oauthPrefix    string
	cookieNames    []string
	sessionCookie  func(name string) bool
}

// DefaultCookiePrefix is Better-Auth's advanced.cookiePrefix default.
const DefaultCookiePrefix = "better-auth"

// SessionCookieNames returns the session cookie names for a cookie prefix and
// an optional replacement of "<prefix>.session_token": the __Secure- variant
// first, then the plain one.
func SessionCookieNames(prefix, name string) []string {
	if prefix == "" {
		prefix = DefaultCookiePrefix
	}
	if name == "" {
		name = prefix + ".session_token"
	}
	return []string{"__Secure-" + name, name}
}

// NewExtractor returns an Extractor for cfg, with defaults filled in.
func NewExtractor(cfg ExtractorConfig) *Extractor {
	e := &Extractor{
		apiKeyPrefixes: cfg.APIKeyPrefixes,
		requireSig:     cfg.RequireSignature,
		cookieNames:    cfg.CookieNames,
		oauthPrefix:    cfg.OAuthPrefix,
	}
	if cfg.OAuth {
		e.oauth = KindOAuth
	}
	for _, h := range cfg.APIKeyHeaders {
		e.apiKeyHeaders = append(e.apiKeyHeaders, textproto.CanonicalMIMEHeaderKey(h))
	}
	if len(e.apiKeyHeaders) == 0 {
		e.apiKeyHeaders = []string{"X-Api-Key"}
	}
	if len(e.cookieNames) == 0 {
		e.cookieNames = SessionCookieNames(cfg.CookiePrefix, "")
	}
	e.sessionCookie = SessionCookieMatcher(cfg.CookiePrefix, e.cookieNames)
	return e
}

// APIKeyHeaders returns the canonical API-key header names.
func (e *Extractor) APIKeyHeaders() []string { return e.apiKeyHeaders }

// Extract returns the request's credential, or a zero Credential (KindNone)
// when there is none. Exactly one source is used: the API-key headers, then
// Authorization, then the session cookie. An empty header and a non-Bearer
// Authorization header do not count as credentials.
func (e *Extractor) Extract(h HeaderGetter) Credential {
	for _, name := range e.apiKeyHeaders {
		vs := h.Values(name)
		if len(vs) == 0 || (len(vs) == 1 && strings.TrimSpace(vs[0]) == "") {
			continue
		}
		c := Credential{Kind: KindAPIKey, Source: SourceAPIKeyHeader, Name: name}
		if len(vs) > 1 {
			return invalid(c)
		}
		return bounded(c, vs[0])
	}
	if vs := h.Values("Authorization"); len(vs) > 0 {
		if len(vs) > 1 {
			return invalid(Credential{Source: SourceBearer, Name: "Authorization"})
		}
		if v, ok := bearerValue(vs[0]); ok {
			c := bounded(Credential{Kind: e.classifyBearer(v), Source: SourceBearer, Name: "Authorization"}, v)
			if c.Kind == KindOAuth {
				// Better-Auth hashes the token without its prefix; the
				// prefix alone is no token.
				if c.Value = c.Value[len(e.oauthPrefix):]; c.Value == "" {
					return invalid(c)
				}
			}
			return c
		}
	}
	if cookies := h.Values("Cookie"); len(cookies) > 0 {
		for _, name := range e.cookieNames {
			// Browsers send a stale parent-domain cookie after the current
			// one, so the first occurrence wins.
			// An empty one is no session, as Better-Auth reads it (a
			// logged-out browser's), not a failed guess.
			if v, ok := findCookie(cookies, name); ok && strings.TrimSpace(v) != "" {
				c := Credential{Kind: KindSession, Source: SourceCookie, Name: name}
				return bounded(c, v)
			}
		}
	}
	return Credential{}
}

// bounded sets the trimmed value, rejecting one that no Better-Auth
// database can hold: oversized, not UTF-8 (PostgreSQL refuses such text,
// and the query would fail as if the database were down), or with a NUL.
func bounded(c Credential, v string) Credential {
	v = strings.TrimSpace(v)
	limit := MaxCredentialLen
	if c.Kind == KindJWT {
		limit = MaxJWTLen
	}
	if len(v) > limit || !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
		return invalid(c)
	}
	c.Value = v
	return c
}

func invalid(c Credential) Credential {
	c.Kind, c.Value = KindInvalid, ""
	return c
}

// bearerValue returns the token of a "Bearer <token>" header; the scheme is
// case-insensitive, as in Better-Auth's bearer plugin.
func bearerValue(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	v := strings.TrimSpace(h[len(scheme):])
	return v, v != ""
}

// classifyBearer decides what a bearer value is from its shape alone:
// signed session tokens contain '.', keys carry a configured prefix, and so
// may OAuth tokens; a raw 32-character alphanumeric token is a session
// token, or either kind when no prefixes tell keys apart, and an OAuth token
// when those are accepted.
func (e *Extractor) classifyBearer(v string) Kind {
	if e.oauth != 0 && LooksLikeJWT(v) {
		return KindJWT
	}
	if strings.ContainsAny(v, ".%") {
		return KindSession
	}
	if e.oauth != 0 && e.oauthPrefix != "" && strings.HasPrefix(v, e.oauthPrefix) {
		return KindOAuth
	}
	for _, p := range e.apiKeyPrefixes {
		if strings.HasPrefix(v, p) {
			return KindAPIKey
		}
	}
	if isRawSessionToken(v) {
		switch {
		case e.requireSig:
			return KindAPIKey | e.oauth
		case len(e.apiKeyPrefixes) > 0:
			return KindSession | e.oauth
		}
		return KindEither | e.oauth
	}
	return KindAPIKey
}

// LooksLikeJWT reports whether v has a compact JWS's shape, within
// MaxJWTLen: three base64url parts, the first a JSON object ("eyJ" is
// base64url of `{"`). It decodes nothing. A signed session token has one
// '.' and a base64 (not base64url) signature.
func LooksLikeJWT(v string) bool {
	if len(v) > MaxJWTLen || !strings.HasPrefix(v, "eyJ") || strings.Count(v, ".") != 2 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// isRawSessionToken reports whether v has the shape of Better-Auth's
// generateId(32): 32 characters from [A-Za-z0-9].
func isRawSessionToken(v string) bool {
	if len(v) != 32 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// findCookie scans Cookie header values for the first cookie called name,
// without allocating.
func findCookie(headers []string, name string) (string, bool) {
	for _, line := range headers {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			// The name is read as cookieName reads it, and as hasCookie
			// does before Strip removes it: a name after a Unicode space
			// (U+2003, bytes Better-Auth reads as Latin-1 letters) is no
			// session cookie, else it would be read here and left for
			// the upstream.
			k, v, ok := strings.Cut(part, "=")
			if ok && cookieName(k) == name {
				return strings.Trim(strings.Trim(v, " \t\n\v\f\r"), `"`), true
			}
		}
	}
	return "", false
}

// RemoveCookies returns the Cookie header value without the named cookies
// (and their chunked ".N" continuations), or "" when nothing is left.
func RemoveCookies(headers []string, drop func(name string) bool) string {
	var b strings.Builder
	for _, line := range headers {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			k, _, _ := strings.Cut(part, "=")
			if drop(cookieName(k)) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	return b.String()
}

// cookieName returns a cookie's name as Better-Auth reads it: Node decodes
// header bytes as Latin-1 and better-call trims the name with JavaScript's
// trim(), which also removes U+00A0. A name the gateway read differently
// could carry a session past it.
func cookieName(k string) string {
	isSpace := func(c byte) bool { return c == ' ' || ('\t' <= c && c <= '\r') || c == 0xa0 }
	for len(k) > 0 && isSpace(k[0]) {
		k = k[1:]
	}
	for len(k) > 0 && isSpace(k[len(k)-1]) {
		k = k[:len(k)-1]
	}
	return k
}

// SessionCookieMatcher matches the cookies that hold a credential, or what
// a session holds, each with or without __Secure-:
//   - the token cookies,
//   - the cookie cache (<prefix>.session_data, with its .0, .1 ... chunks),
//     which holds the token too,
//   - the account cookie (<prefix>.account_data and chunks,
//     storeAccountCookie), which holds the user's OAuth tokens,
//   - the multi-session plugin's signed tokens (<token name>_multi-<token>),
//   - the admin plugin's admin_session (the impersonating admin's own
//     token), and the two-factor plugin's two_factor and trust_device.
func SessionCookieMatcher(prefix string, tokenNames []string) func(string) bool {
	if prefix == "" {
		prefix = DefaultCookiePrefix
	}
	var chunked, whole, multi []string
	chunked = []string{prefix + ".session_data", prefix + ".account_data"}
	whole = []string{prefix + ".admin_session", prefix + ".two_factor", prefix + ".trust_device"}
	for _, n := range tokenNames {
		multi = append(multi, strings.TrimPrefix(n, "__Secure-")+"_multi-")
	}
	return func(name string) bool {
		for _, n := range tokenNames {
			if name == n {
				return true
			}
		}
		name = strings.TrimPrefix(name, "__Secure-")
		for _, n := range chunked {
			if name == n || (strings.HasPrefix(name, n) && name[len(n)] == '.') {
				return true
			}
		}
		for _, n := range whole {
			if name == n {
				return true
			}
		}
		for _, n := range multi {
			if strings.HasPrefix(name, n) {
				return true
			}
		}
		return false
	}
}
