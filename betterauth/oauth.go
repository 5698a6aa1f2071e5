package betterauth

import (
	"slices"
	"strings"
	"time"
)

// OAuthToken is the part of an OAuth access token's row the gateway reads,
// joined with its client, its session and its user: the oauthAccessToken
// table of Better-Auth's OAuth provider (@better-auth/oauth-provider), or
// of the legacy mcp and oidcProvider plugins (Legacy).
type OAuthToken struct {
	// ID is the row's id.
	ID string
	// ClientID is the client the token was issued to; Client its row, nil
	// when there is none.
	ClientID string
	Client   *OAuthClient
	// UserID is the token's user ("" for a machine-to-machine token, issued
	// to the client itself); User that user's row, nil when there is none.
	UserID string
	User   *User
	// SessionID is the session the token was issued in ("" for none);
	// SessionExpiresAt that session's expiry, zero when its row is gone.
	SessionID        string
	SessionExpiresAt time.Time
	// Scopes are the scopes granted.
	Scopes []string
	// Resources are the token's audiences (RFC 8707 resource indicators),
	// nil for none; ResourceMissing says one of them no longer has its
	// oauthResource row.
	Resources       []string
	ResourceMissing bool
	// ExpiresAt is when the token expires; zero means it never was given an
	// expiry, which Better-Auth takes as expired.
	ExpiresAt time.Time
	// Revoked is set when the row says the token was revoked (Better-Auth
	// sets it on the tokens of a session that signs out).
	Revoked bool
	// Bound says the token is bound to a proof-of-possession key (DPoP's
	// cnf): it is not a bearer token, and the gateway cannot check the
	// proof.
	Bound bool
	// Legacy says the row is the legacy plugins': the token is stored in
	// plain text and has no revoked, session or resources columns.
	Legacy bool
	// CheckBy, when set, is when a JWT's signing key must be looked at
	// again: a cache does not serve the record past it, so that a key
	// deleted from the jwks table stops its tokens.
	CheckBy time.Time

	hdrID, hdrClient, hdrScopes string // encoded for headers, set by Seal
	sealed                      bool
}

// OAuthClient is the part of an OAuth client's row the gateway reads
// (oauthClient, or oauthApplication for the legacy plugins).
type OAuthClient struct {
	ClientID string
	Name     string
	Disabled bool
}

func (t *OAuthToken) seal() {
	if !t.sealed {
		t.hdrID, t.hdrClient, t.hdrScopes = t.encode()
		t.sealed = true
		t.User.seal()
	}
}

func (t *OAuthToken) encode() (id, client, scopes string) {
	return EncodeHeaderValue(t.ID), EncodeHeaderValue(t.ClientID), scopesHeader(t.Scopes)
}

// scopesHeader joins the scopes that fit in a header value, whole: a
// scope cut short could name one never granted (files:write-own as
// files:write). Those that do not fit are left out, which grants less.
func scopesHeader(scopes []string) string {
	var b strings.Builder
	for _, s := range scopes {
		n := len(s)
		if b.Len() > 0 {
			n++
		}
		if b.Len()+n > MaxHeaderValue {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return EncodeHeaderValue(b.String())
}

// headerValues returns the token's id, client id and scopes encoded for
// headers.
func (t *OAuthToken) headerValues() (id, client, scopes string) {
	if t.sealed {
		return t.hdrID, t.hdrClient, t.hdrScopes
	}
	return t.encode()
}

// OAuthPolicy is what the gateway asks of every OAuth access token beyond
// what Better-Auth checks.
type OAuthPolicy struct {
	// Audience is the protected resource's URL: a token must have been
	// issued for it (RFC 8707; MCP requires resource servers to refuse
	// tokens issued for others), unless AllowUnbound. Empty: no audience is
	// required.
	Audience string
	// AllowUnbound accepts tokens issued without an audience: Better-Auth's
	// opaque tokens never carry one. A token issued for other resources is
	// refused all the same. It is unsafe: a token issued to any client of
	// the same authorization server without a resource is then accepted
	// here.
	AllowUnbound bool
}

// checkOAuth applies Better-Auth's validation of an opaque access token
// (validateOpaqueAccessToken) in its order, then the user's ban and the
// gateway's audience policy. The legacy plugins checked no expiry: it is
// enforced anyway.
func (v *Verifier) checkOAuth(t *OAuthToken, now time.Time) Decision {
	switch {
	case t.ExpiresAt.IsZero() || t.ExpiresAt.Before(now):
		return deny(TokenExpired)
	case t.Revoked:
		return deny(TokenRevoked)
	case t.Client == nil:
		return deny(InvalidToken)
	case t.Client.Disabled:
		return deny(ClientDisabled)
	case t.SessionID != "" && (t.SessionExpiresAt.IsZero() || t.SessionExpiresAt.Before(now)):
		return deny(TokenRevoked) // its session ended
	case t.ResourceMissing:
		return deny(InvalidToken)
	case t.UserID != "" && t.User == nil:
		return deny(InvalidToken)
	case t.Bound:
		return deny(InvalidToken)
	case t.User != nil && t.User.BannedAt(now):
		return deny(UserBanned)
	case v.oauth.Audience != "" && !slices.Contains(t.Resources, v.oauth.Audience) &&
		!(len(t.Resources) == 0 && v.oauth.AllowUnbound):
		return deny(WrongAudience)
	}
	id, client, scopes := t.headerValues()
	expires := t.ExpiresAt
	if t.SessionID != "" && t.SessionExpiresAt.Before(expires) {
		expires = t.SessionExpiresAt // a stream ends with the session
	}
	return Decision{Method: MethodOAuth, User: t.User, CredentialID: t.ID, credHdr: id, ExpiresAt: expires,
		Client: t.ClientID, Scopes: t.Scopes, TokenSession: t.SessionID, clientHdr: client, scopesHdr: scopes}
}
