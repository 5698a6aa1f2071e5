package betterauth

import (
	"net/http"
	"time"
)

// Reason is why a request was allowed or denied. The zero value is Allowed.
type Reason uint8

// The reasons a Verifier gives, plus BackendUnavailable for a failed lookup.
const (
	Allowed Reason = iota
	MissingCredential
	InvalidAPIKey
	KeyDisabled
	KeyExpired
	UsageExceeded
	InvalidSession
	SessionExpired
	UserBanned
	// The route's rules refused a verified credential (see Rules).
	CredentialNotAccepted
	InsufficientRole
	InsufficientPermissions
	InsufficientOrgRole
	// The route's address rules refused the client.
	IPNotAllowed
	// The client failed to authenticate too often (see Shield).
	TooManyFailures
	// The key's rate limit (rateLimitMax per rateLimitTimeWindow) is spent:
	// 429, or 401 as Better-Auth releases up to 1.6.10 answer.
	RateLimited
	RateLimitedUnauthorized
	// One of the route's rate_limit tiers is exhausted (see Limiter); not
	// the API key's own Better-Auth rate limit.
	RateLimitExceeded
	// OAuth access tokens: unknown (or whose client, user or resource
	// row is gone, or bound to a proof the gateway cannot check), expired,
	// revoked (or whose session ended), issued to a disabled client, or
	// issued for another resource.
	InvalidToken
	TokenExpired
	TokenRevoked
	ClientDisabled
	WrongAudience
	// The route needs scopes the credential lacks: an OAuth token may ask
	// for them (the answer says which), API keys and sessions cannot.
	InsufficientScope
	// MCP (package mcp): a tool, resource or prompt the route's rules
	// keep from this credential whatever it holds; a request the gateway
	// cannot judge (not JSON-RPC, headers that contradict the body); a
	// body past the bound of what the gateway reads; a session opened by
	// another principal.
	ToolNotAllowed
	InvalidMCPRequest
	BodyTooLarge
	MCPSessionNotFound
	BackendUnavailable
	numReasons
)

// NumReasons is the number of reasons, for tables indexed by Reason.
const NumReasons = int(numReasons)

// Outcome is how every front end answers a Reason: the HTTP status, the
// machine-readable code (Better-Auth's own name where it has one) and a
// human-readable message.
type Outcome struct {
	Status  int
	Code    string
	Message string
}

// outcomes is the one table that maps decisions to answers. The Caddy handler
// and the ext_authz servers both read it, so they cannot drift apart.
var outcomes = [numReasons]Outcome{
	Allowed:           {http.StatusOK, "OK", "Authenticated."},
	MissingCredential: {http.StatusUnauthorized, "MISSING_CREDENTIAL", "An API key or a session token is required."},
	InvalidAPIKey:     {http.StatusUnauthorized, "INVALID_API_KEY", "Invalid API key."},
	KeyDisabled:       {http.StatusUnauthorized, "KEY_DISABLED", "API Key is disabled"},
	KeyExpired:        {http.StatusUnauthorized, "KEY_EXPIRED", "API Key has expired"},
	UsageExceeded:     {http.StatusTooManyRequests, "USAGE_EXCEEDED", "API Key has reached its usage limit"},
	InvalidSession:    {http.StatusUnauthorized, "INVALID_SESSION", "Invalid session token."},
	SessionExpired:    {http.StatusUnauthorized, "SESSION_EXPIRED", "Session has expired."},
	UserBanned:        {http.StatusForbidden, "USER_BANNED", "The user is banned."},
	CredentialNotAccepted: {http.StatusUnauthorized, "CREDENTIAL_NOT_ACCEPTED",
		"This route does not accept this kind of credential."},
	InsufficientRole: {http.StatusForbidden, "INSUFFICIENT_ROLE", "The user's role does not allow this."},
	InsufficientPermissions: {http.StatusForbidden, "INSUFFICIENT_PERMISSIONS",
		"The API key's permissions do not allow this."},
	InsufficientOrgRole: {http.StatusForbidden, "INSUFFICIENT_ORG_ROLE",
		"The user's role in the active organization does not allow this."},
	IPNotAllowed: {http.StatusForbidden, "IP_NOT_ALLOWED", "Requests from this address are not allowed here."},
	TooManyFailures: {http.StatusTooManyRequests, "TOO_MANY_FAILURES",
		"Too many failed authentications from this address; try again later."},
	RateLimited:             {http.StatusTooManyRequests, "RATE_LIMITED", "Rate limit exceeded."},
	RateLimitedUnauthorized: {http.StatusUnauthorized, "RATE_LIMITED", "Rate limit exceeded."},
	RateLimitExceeded: {http.StatusTooManyRequests, "RATE_LIMIT_EXCEEDED",
		"Too many requests; try again later."},
	InvalidToken:   {http.StatusUnauthorized, "INVALID_TOKEN", "Invalid access token."},
	TokenExpired:   {http.StatusUnauthorized, "TOKEN_EXPIRED", "The access token has expired."},
	TokenRevoked:   {http.StatusUnauthorized, "TOKEN_REVOKED", "The access token was revoked."},
	ClientDisabled: {http.StatusUnauthorized, "CLIENT_DISABLED", "The access token's client is disabled."},
	WrongAudience: {http.StatusUnauthorized, "INVALID_AUDIENCE",
		"The access token was not issued for this resource."},
	InsufficientScope: {http.StatusForbidden, "INSUFFICIENT_SCOPE",
		"The credential lacks a scope this request needs."},
	ToolNotAllowed: {http.StatusForbidden, "TOOL_NOT_ALLOWED",
		"This credential may not use this tool, resource or prompt."},
	InvalidMCPRequest: {http.StatusBadRequest, "INVALID_MCP_REQUEST",
		"The request is not a JSON-RPC message the gateway can judge."},
	BodyTooLarge:       {http.StatusRequestEntityTooLarge, "BODY_TOO_LARGE", "The request body is larger than the gateway reads."},
	MCPSessionNotFound: {http.StatusNotFound, "MCP_SESSION_NOT_FOUND", "Session not found."},
	BackendUnavailable: {http.StatusServiceUnavailable, "BACKEND_UNAVAILABLE", "The authentication backend is unavailable; try again later."},
}

// Outcome returns the answer for r.
func (r Reason) Outcome() Outcome {
	if r >= numReasons {
		return outcomes[BackendUnavailable]
	}
	return outcomes[r]
}

// String returns the reason's code, for logs.
func (r Reason) String() string { return r.Outcome().Code }

// Reasons lists every reason, in order; front ends use it to precompute their
// responses.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Method is how the caller authenticated.
type Method uint8

// Methods.
const (
	MethodNone Method = iota
	MethodAPIKey
	MethodSession
	MethodOAuth
)

// String returns the value of the X-Auth-Method header: "api_key",
// "session" or "oauth".
func (m Method) String() string {
	switch m {
	case MethodAPIKey:
		return "api_key"
	case MethodSession:
		return "session"
	case MethodOAuth:
		return "oauth"
	}
	return ""
}

// Decision is the result of verifying one credential.
type Decision struct {
	Reason Reason
	Method Method

	// User is the verified owner; set when Reason is Allowed, except for
	// an organization-owned API key and a machine-to-machine OAuth token,
	// which have no user.
	User *User
	// Org is the organization owning an API key whose configuration
	// references organizations; then User is nil.
	Org *Organization
	// Member is a session's active organization and the user's role in
	// it; nil for API keys and for sessions without one.
	Member *Membership
	// CredentialID is the API key's, the session's or the OAuth token's
	// row id; set when Reason is Allowed.
	CredentialID string
	// ExpiresAt is when the credential expires (zero: never); set when
	// Reason is Allowed.
	ExpiresAt time.Time
	// Permissions are the API key's; nil for sessions.
	Permissions Permissions
	// AllowedIPs are the API key's own allow-list (nil: unrestricted),
	// which the Gate applies after the route's rules.
	AllowedIPs *IPAllowList
	// Client and Scopes are an OAuth token's client id and granted scopes,
	// TokenSession the session it was issued in ("" for none).
	Client       string
	Scopes       []string
	TokenSession string

	credHdr, clientHdr, scopesHdr string // encoded for headers

	// RetryAfter, when positive, is how long until the denial may lift (a key
	// that refills).
	RetryAfter time.Duration

	// Usage is what counting this use of an API key found; nil when uses
	// are not counted (see Meter).
	Usage *Usage

	key *APIKey // the verified key, for the Meter
}

// CredentialHeader returns CredentialID encoded as in the headers.
func (d Decision) CredentialHeader() string { return d.credHdr }

// ClientHeader and ScopesHeader return an OAuth token's client id and
// scopes (space-separated) encoded as in the headers.
func (d Decision) ClientHeader() string { return d.clientHdr }
func (d Decision) ScopesHeader() string { return d.scopesHdr }

// Allowed reports whether the request may proceed.
func (d Decision) Allowed() bool { return d.Reason == Allowed }

// Identity names who a verified credential belongs to, without its
// secret: what an audit trail records.
type Identity struct {
	Method Method
	// UserID is the user's id; "" for an organization's API key and a
	// machine-to-machine OAuth token.
	UserID string
	// OrgID is the organization owning an API key, or a session's active
	// organization.
	OrgID string
	// CredentialID is the API key's, session's or OAuth token's row id;
	// ClientID the OAuth client's.
	CredentialID, ClientID string
}

func (d *Decision) identity() Identity {
	id := Identity{Method: d.Method, CredentialID: d.CredentialID, ClientID: d.Client}
	if d.User != nil {
		id.UserID = d.User.ID
	}
	switch {
	case d.Org != nil:
		id.OrgID = d.Org.ID
	case d.Member != nil:
		id.OrgID = d.Member.OrgID
	}
	return id
}

func deny(r Reason) Decision { return Decision{Reason: r} }
