package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// DefaultLeeway is the clock skew Verify allows by default; see
// AccessTokenConfig.Leeway.
const DefaultLeeway = 30 * time.Second

// maxLeeway bounds AccessTokenConfig.Leeway: more is not clock skew.
const maxLeeway = 5 * time.Minute

// maxKIDLength bounds a token's kid before it reaches a key source (a
// Better-Auth kid is 32 characters).
const maxKIDLength = 256

// AccessTokenConfig configures an AccessTokenVerifier.
type AccessTokenConfig struct {
	// Keys finds the key a token's kid names: a CachedKeys over the
	// store's jwks table, or a JWKSURL. Required.
	Keys KeySource
	// Issuers are the accepted iss values, compared exactly.
	// @better-auth/oauth-provider signs with its jwt plugin's
	// jwt.issuer, by default Better-Auth's baseURL with its basePath:
	// "http://localhost:3000/api/auth" (not the origin alone, which is
	// the iss of the session JWTs of the jwt plugin). At least one.
	Issuers []string
	// Audience is the protected resource's identifier, the resource
	// parameter (RFC 8707) clients ask tokens for: the token's aud must
	// hold it. Required unless AllowUnbound.
	Audience string
	// AllowUnbound also accepts tokens without an aud claim, and with
	// Audience empty, tokens for any audience. Unsafe: a token meant for
	// another resource (which could replay it here) is then accepted.
	// Better-Auth issues JWT access tokens only for a resource, so they
	// always carry an aud; a token naming only other audiences is refused
	// whenever Audience is set.
	AllowUnbound bool
	// Leeway is the clock skew allowed between the gateway and
	// Better-Auth: a token is accepted until exp+Leeway, and an iat or
	// nbf up to Leeway in the future. Zero means DefaultLeeway (30 s);
	// negative means none; at most 5 minutes.
	//
	// Without leeway a gateway whose clock is behind Better-Auth's would
	// refuse fresh tokens (iat in its future) until its clock caught up;
	// 30 s covers an NTP-synchronised clock with a wide margin and lets
	// an expired token live 30 s longer than Better-Auth's own check
	// (jose, no tolerance) would, against a lifetime of an hour.
	Leeway time.Duration
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
}

// AccessTokenVerifier verifies JWT access tokens (RFC 9068) issued by
// Better-Auth's @better-auth/oauth-provider, offline: the signature with
// a key of Better-Auth's jwt plugin, then the claims. Revocation is out of
// its reach, as it is of Better-Auth's own JWT checks: a JWT access token
// stays valid until it expires, except that Better-Auth's introspection
// also refuses it once its client is disabled or its session (sid) is
// gone, which a caller can check with the returned ClientID and SessionID.
type AccessTokenVerifier struct {
	keys     KeySource
	issuers  []string
	audience string
	unbound  bool
	leeway   time.Duration
	now      func() time.Time
}

// NewAccessTokenVerifier checks cfg and returns its verifier.
func NewAccessTokenVerifier(cfg AccessTokenConfig) (*AccessTokenVerifier, error) {
	if cfg.Keys == nil {
		return nil, errors.New("oauth: access tokens: a key source is required")
	}
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("oauth: access tokens: at least one issuer is required")
	}
	if slices.Contains(cfg.Issuers, "") {
		return nil, errors.New("oauth: access tokens: an empty issuer")
	}
	if cfg.Audience == "" && !cfg.AllowUnbound {
		return nil, errors.New("oauth: access tokens: the audience (the resource's URL) is required unless unbound tokens are allowed")
	}
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultLeeway
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	case cfg.Leeway > maxLeeway:
		return nil, fmt.Errorf("oauth: access tokens: a leeway of %v (at most %v)", cfg.Leeway, maxLeeway)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AccessTokenVerifier{
		keys:     cfg.Keys,
		issuers:  slices.Clone(cfg.Issuers),
		audience: cfg.Audience,
		unbound:  cfg.AllowUnbound,
		leeway:   cfg.Leeway,
		now:      cfg.Now,
	}, nil
}

// ErrInvalidToken matches every *TokenError: errors.Is(err,
// ErrInvalidToken) tells an invalid token (401) from a failure to decide
// (503).
var ErrInvalidToken = errors.New("oauth: invalid access token")

// TokenError says why a token is invalid. Reason is a short machine word,
// safe to log (it never holds any of the token):
//
//	oversized   longer than MaxTokenLength
//	malformed   not a compact JWS of base64url JSON objects
//	typ         the header's typ is not at+jwt (a session JWT, an ID token)
//	alg         the header's alg is not the key's
//	kid         no kid, or an overlong one
//	header      crit, jku, jwk, x5u or x5c in the header
//	unknown_key no usable key with the kid (see Unwrap)
//	signature   the signature does not verify
//	iss         not one of the issuers
//	exp         missing, or expired
//	nbf, iat    in the future
//	aud         not for this resource
//	sub         missing
//	client_id   azp and client_id both missing, or different
//	cnf         sender-constrained (DPoP, mTLS): the binding cannot be checked
//
// A claim of the wrong JSON type is reported under its name.
type TokenError struct {
	Reason  string
	err     error
	expired bool // see Expired
}

func (e *TokenError) Error() string {
	if e.err != nil {
		return "oauth: invalid access token: " + e.Reason + ": " + e.err.Error()
	}
	return "oauth: invalid access token: " + e.Reason
}

// Is makes errors.Is(err, ErrInvalidToken) hold.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

// Unwrap returns the key source's error behind unknown_key, if any.
func (e *TokenError) Unwrap() error { return e.err }

func invalid(reason string) error { return &TokenError{Reason: reason} }

// AccessToken is what a verified token says.
type AccessToken struct {
	// Subject is the sub claim: the user's id, or for a machine-to-machine
	// token (the client_credentials grant) the client's id. See User.
	Subject string
	// ClientID is the client the token was issued to (azp, client_id).
	ClientID string
	// SessionID is the sid claim: the Better-Auth session the user
	// authorized with, when the token has one.
	SessionID string
	// JTI is the token's unique id, for logs.
	JTI string
	// Issuer is the iss claim, one of the configured issuers.
	Issuer string
	// Audience is the aud claim. Better-Auth adds its userinfo endpoint
	// to the requested resource when the openid scope is granted.
	Audience []string
	// Scopes are the granted scopes (the space-separated scope claim).
	Scopes []string
	// ExpiresAt and IssuedAt are the exp and iat claims.
	ExpiresAt, IssuedAt time.Time
	// KeyID is the kid of the key that verified the token.
	KeyID string
}

// User returns the id of the user the token acts for, and false for a
// machine-to-machine token, which has none.
//
// @better-auth/oauth-provider 1.7.5 sets sub to the user's id, or to the
// client's id when there is no user (createJwtAccessToken: sub = user?.id
// ?? client.clientId). A token whose sub equals its client id is therefore
// read as machine-to-machine, whether or not it also has a sid: should a
// user's id ever equal a client's, the token loses the user rather than a
// client gaining one.
func (t AccessToken) User() (string, bool) {
	if t.Subject == t.ClientID {
		return "", false
	}
	return t.Subject, true
}

// HasScope reports whether the token was granted scope.
func (t AccessToken) HasScope(scope string) bool { return slices.Contains(t.Scopes, scope) }

// Verify checks token and returns its claims. An invalid token is a
// *TokenError (errors.Is(err, ErrInvalidToken)); any other error is the key
// source's failure, and decides nothing.
//
// In order: the shape and size, the header (typ at+jwt, an alg Better-Auth
// signs with, a kid, no key or critical extension carried in the token),
// the key the kid names (whose algorithm must be the header's), the
// signature, and only then the claims.
func (v *AccessTokenVerifier) Verify(ctx context.Context, token string) (AccessToken, error) {
	if len(token) > MaxTokenLength {
		return AccessToken{}, invalid("oversized")
	}
	if !betterauth.LooksLikeJWT(token) {
		// Only base64url and the two dots: Go's decoder skips CR and LF,
		// so a signature with line breaks added would still verify, and
		// one token would have many spellings.
		return AccessToken{}, invalid("malformed")
	}
	rawHeader, rest, ok1 := strings.Cut(token, ".")
	rawPayload, rawSig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(rawSig, '.') >= 0 {
		return AccessToken{}, invalid("malformed")
	}
	header, err := decodeObject(rawHeader)
	if err != nil {
		return AccessToken{}, invalid("malformed")
	}
	alg, kid, reason := checkHeader(header)
	if reason != "" {
		return AccessToken{}, invalid(reason)
	}
	sig, err := b64.DecodeString(rawSig)
	if err != nil || len(sig) == 0 {
		return AccessToken{}, invalid("malformed")
	}

	key, err := v.keys.Key(ctx, kid)
	if err != nil {
		if notFound(err) {
			return AccessToken{}, &TokenError{Reason: "unknown_key", err: err}
		}
		return AccessToken{}, fmt.Errorf("oauth: finding the signing key: %w", err)
	}
	if key.Alg != alg {
		return AccessToken{}, invalid("alg")
	}
	if !key.verify([]byte(token[:len(rawHeader)+1+len(rawPayload)]), sig) {
		return AccessToken{}, invalid("signature")
	}

	claims, err := decodeObject(rawPayload)
	if err != nil {
		return AccessToken{}, invalid("malformed")
	}
	at, reason := v.checkClaims(claims)
	at.KeyID = kid
	switch reason {
	case "":
		return at, nil
	case "exp":
		if !at.ExpiresAt.IsZero() {
			// Genuine and valid in every other way, but past its exp:
			// its claims come with the error, so that the client is told
			// its token expired (a stale credential, not a guess).
			return at, &TokenError{Reason: reason, expired: true}
		}
	}
	return AccessToken{}, invalid(reason)
}

// Expired reports whether err is a genuine token's expiry: everything
// else about the token held, and Verify returned its claims.
func Expired(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.expired
}

// decodeObject decodes a base64url JSON object into its members, by their
// exact names (encoding/json would match struct fields case-insensitively:
// "Typ" is not typ, nor a custom claim "SID" sid).
func decodeObject(part string) (map[string]json.RawMessage, error) {
	b, err := b64.DecodeString(part)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil { // the JSON null
		return nil, errors.New("not an object")
	}
	return m, nil
}

// checkHeader returns the header's alg and kid, or why it is refused.
func checkHeader(h map[string]json.RawMessage) (alg, kid, reason string) {
	// RFC 9068 §2.1 and §4: the explicit type keeps other JWTs signed
	// with the same keys out, Better-Auth's session JWTs above all (they
	// have no typ). Media types are case-insensitive, and the
	// "application/" prefix may be spelled (RFC 7515 §4.1.9).
	typ, ok := stringMember(h, "typ")
	if !ok || !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return "", "", "typ"
	}
	// No key, certificate or critical extension from the token itself:
	// keys come from the key source alone, and no extension is understood.
	for _, name := range []string{"crit", "jku", "jwk", "x5u", "x5c"} {
		if _, present := h[name]; present {
			return "", "", "header"
		}
	}
	alg, ok = stringMember(h, "alg")
	if !ok {
		return "", "", "alg"
	}
	switch alg {
	case EdDSA, ES256, ES512, RS256, PS256:
	default: // none, HS256, …: never, whatever the key
		return "", "", "alg"
	}
	kid, ok = stringMember(h, "kid")
	if !ok || kid == "" || len(kid) > maxKIDLength || strings.ContainsFunc(kid, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		// Better-Auth's kids are generated ids; one with a NUL the
		// database would refuse (a 503), and no row has control
		// characters.
		return "", "", "kid"
	}
	return alg, kid, ""
}

// checkClaims reads and checks the claims, or says why they are refused.
func (v *AccessTokenVerifier) checkClaims(c map[string]json.RawMessage) (AccessToken, string) {
	var at AccessToken
	var ok bool
	if at.Issuer, ok = stringMember(c, "iss"); !ok || !slices.Contains(v.issuers, at.Issuer) {
		return at, "iss"
	}

	now := v.now()
	exp, present, ok := dateMember(c, "exp")
	if !ok || !present {
		return at, "exp"
	}
	at.ExpiresAt = exp // whether it has passed is judged last (see Expired)
	// iat is required (RFC 9068 §2.2; Better-Auth always sets it).
	iat, present, ok := dateMember(c, "iat")
	if !ok || !present || iat.After(now.Add(v.leeway)) {
		return at, "iat"
	}
	at.IssuedAt = iat
	if nbf, present, ok := dateMember(c, "nbf"); !ok || present && nbf.After(now.Add(v.leeway)) {
		return at, "nbf"
	}

	aud, ok := audienceMember(c)
	if !ok {
		return at, "aud"
	}
	at.Audience = aud
	switch {
	case v.audience != "" && slices.Contains(aud, v.audience):
	case v.unbound && (len(aud) == 0 || v.audience == ""):
	default:
		return at, "aud"
	}

	if at.Subject, ok = stringMember(c, "sub"); !ok || at.Subject == "" {
		return at, "sub"
	}
	azp, ok1 := stringMember(c, "azp")
	clientID, ok2 := stringMember(c, "client_id")
	switch {
	case !ok1 || !ok2:
		return at, "client_id"
	case azp == "":
		azp = clientID
	case clientID != "" && clientID != azp:
		return at, "client_id"
	}
	if azp == "" { // a session JWT (no azp) signed as at+jwt lands here
		return at, "client_id"
	}
	at.ClientID = azp

	// A sender-constrained token (RFC 9449 DPoP, RFC 8705 mTLS) is only
	// valid with proof of its key, which the gateway does not check: a
	// stolen one must not pass as a bearer token.
	if raw, present := c["cnf"]; present && string(raw) != "null" {
		return at, "cnf"
	}

	if at.SessionID, ok = stringMember(c, "sid"); !ok {
		return at, "sid"
	}
	if at.JTI, ok = stringMember(c, "jti"); !ok {
		return at, "jti"
	}
	scope, ok := stringMember(c, "scope")
	if !ok {
		return at, "scope"
	}
	at.Scopes = strings.Fields(scope)
	if !now.Before(exp.Add(v.leeway)) {
		return at, "exp"
	}
	return at, ""
}

// stringMember returns member name of m as a string: "" when absent or
// null, and false when it is another type.
func stringMember(m map[string]json.RawMessage, name string) (string, bool) {
	raw, present := m[name]
	if !present || string(raw) == "null" {
		return "", true
	}
	if len(raw) >= 2 && raw[0] == '"' && !slices.ContainsFunc(raw[1:len(raw)-1], needsUnquoting) {
		return string(raw[1 : len(raw)-1]), true // the usual string: no escape to undo
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// needsUnquoting reports whether a byte of a JSON string's body makes it
// more than its bytes: an escape or quote (or a control character, which
// json.Unmarshal then refuses).
func needsUnquoting(c byte) bool { return c == '\\' || c == '"' || c < 0x20 }

// dateMember reads a NumericDate (RFC 7519 §2): seconds since the epoch,
// possibly fractional. present is false when it is absent or null, ok
// false when it is not a number in range.
func dateMember(m map[string]json.RawMessage, name string) (t time.Time, present, ok bool) {
	raw, present := m[name]
	if !present || string(raw) == "null" {
		return time.Time{}, false, true
	}
	// A JSON number (the only JSON value starting with - or a digit) is
	// in ParseFloat's syntax.
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return time.Time{}, true, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f >= 1<<53 {
		return time.Time{}, true, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, true
}

// audienceMember reads aud: one string, or an array of them (RFC 7519
// §4.1.3). Absent or null is no audience.
func audienceMember(m map[string]json.RawMessage) ([]string, bool) {
	raw, present := m["aud"]
	if !present || string(raw) == "null" {
		return nil, true
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, false
		}
		return []string{s}, true
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, false
	}
	return list, true
}
