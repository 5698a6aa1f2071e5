package betterauth

import (
	"context"
	"fmt"
	"time"
)

// Options configure a Verifier.
type Options struct {
	// Store reads the records. Required.
	Store Store
	// Secret is Better-Auth's secret (BETTER_AUTH_SECRET), used to check
	// signed session tokens. Without it only raw bearer session tokens can
	// verify.
	Secret string
	// ConfigIDs are the api-key plugin configurations whose keys are
	// accepted. NULL, "" and "default" all mean the default configuration.
	// Default: the default configuration only.
	ConfigIDs []string
	// OrgConfigIDs are the configurations among them whose references is
	// "organization": their keys' referenceId names an organization, not
	// a user. Such a key without its organization row is unknown
	// (INVALID_API_KEY); bans do not apply to it (it has no user).
	OrgConfigIDs []string
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Metered says a Meter counts uses and decides on the quota from the
	// row as it is now: the cached remaining is then not checked.
	Metered bool
	// OAuth is what OAuth access tokens must satisfy beyond Better-Auth's
	// own checks.
	OAuth OAuthPolicy
}

// Verifier applies Better-Auth's rules to the records a Store returns.
type Verifier struct {
	store     Store
	signer    *Signer
	configIDs []string
	orgIDs    []string // configurations whose keys belong to organizations
	now       func() time.Time
	metered   bool
	oauth     OAuthPolicy
}

// NewVerifier returns a Verifier for opts.
func NewVerifier(opts Options) (*Verifier, error) {
	if opts.Store == nil {
		return nil, fmt.Errorf("betterauth: a store is required")
	}
	v := &Verifier{store: opts.Store, signer: NewSigner(opts.Secret), now: opts.Now, metered: opts.Metered,
		oauth: opts.OAuth}
	if v.now == nil {
		v.now = time.Now
	}
	for _, id := range opts.ConfigIDs {
		v.configIDs = append(v.configIDs, normalConfigID(id))
	}
	for _, id := range opts.OrgConfigIDs {
		v.orgIDs = append(v.orgIDs, normalConfigID(id))
	}
	if len(v.configIDs) == 0 {
		v.configIDs = []string{"default"}
	}
	return v, nil
}

// Verify decides on one credential. A deny is a Decision; a non-nil error
// means the store could not answer, and the caller must fail closed.
func (v *Verifier) Verify(ctx context.Context, c Credential) (Decision, error) {
	switch {
	case c.Kind == KindAPIKey:
		return v.lookup(ctx, NewLookup(KindAPIKey, c.Value), InvalidAPIKey)
	case c.Kind.Reads(KindOAuth) || c.Kind == KindJWT:
		// An OAuth token, or a raw bearer value that may be one: not
		// found, the client is told its token is invalid.
		return v.lookup(ctx, NewLookup(c.Kind, c.Value), InvalidToken)
	case c.Kind == KindEither:
		return v.lookup(ctx, NewLookup(KindEither, c.Value), InvalidSession)
	case c.Kind == KindSession:
		token, ok := v.unsign(c)
		if !ok {
			return deny(InvalidSession), nil
		}
		return v.lookup(ctx, NewLookup(KindSession, token), InvalidSession)
	case c.Kind == KindInvalid:
		if c.Source == SourceAPIKeyHeader {
			return deny(InvalidAPIKey), nil
		}
		return deny(InvalidSession), nil
	}
	return deny(MissingCredential), nil
}

// unsign returns the session token of a session credential. Cookies must be
// signed; a bearer value may be raw unless it contains a signature.
func (v *Verifier) unsign(c Credential) (string, bool) {
	if c.Source == SourceCookie {
		return v.signer.VerifyCookie(c.Value)
	}
	if isRawSessionToken(c.Value) {
		return c.Value, true // the Extractor only lets raw tokens through when allowed
	}
	return v.signer.VerifyBearer(c.Value)
}

func (v *Verifier) lookup(ctx context.Context, l Lookup, notFound Reason) (Decision, error) {
	rec, err := v.store.Lookup(ctx, l)
	if err != nil {
		return Decision{Reason: BackendUnavailable}, err
	}
	// Only a record of a table this kind reads counts, whatever a cache
	// tier handed back.
	now := v.now()
	switch {
	case rec.APIKey != nil && l.Kind.Reads(KindAPIKey):
		return v.checkAPIKey(rec.APIKey, now), nil
	case rec.Session != nil && l.Kind.Reads(KindSession):
		return checkSession(rec.Session, now), nil
	case rec.OAuth != nil && (l.Kind.Reads(KindOAuth) || l.Kind == KindJWT):
		return v.checkOAuth(rec.OAuth, now), nil
	}
	return deny(notFound), nil
}

// checkAPIKey applies validateApiKey's checks in Better-Auth's order, reading
// only: configuration, enabled, expiry, then usage. A key whose owner (the
// user, or the organization for a configuration that references
// organizations) has no row is unknown. The user's ban (which Better-Auth
// leaves to the app) is checked after the key's own state.
func (v *Verifier) checkAPIKey(k *APIKey, now time.Time) Decision {
	if !v.acceptsConfig(k.ConfigID) {
		return deny(InvalidAPIKey)
	}
	org := v.orgOwned(k.ConfigID)
	if (org && k.Org == nil) || (!org && k.User == nil) {
		return deny(InvalidAPIKey)
	}
	if !k.Enabled {
		return deny(KeyDisabled)
	}
	if !k.ExpiresAt.IsZero() && now.After(k.ExpiresAt) {
		return deny(KeyExpired)
	}
	if !org && k.User.BannedAt(now) {
		return deny(UserBanned)
	}
	if k.HasRemaining && k.Remaining <= 0 && !v.metered {
		if wait, refills := k.refillWait(now); !refills {
			return Decision{Reason: UsageExceeded, RetryAfter: wait}
		}
	}
	d := Decision{Method: MethodAPIKey, CredentialID: k.ID, credHdr: k.headerID(), ExpiresAt: k.ExpiresAt, Permissions: k.Permissions,
		AllowedIPs: k.AllowedIPs, key: k}
	if org {
		d.Org = k.Org
	} else {
		d.User = k.User
	}
	return d
}

// refillWait reports whether an exhausted key would be refilled by a verify at
// now (refillInterval and refillAmount set, and more than refillInterval since
// lastRefillAt, or createdAt), and otherwise how long until it would be.
func (k *APIKey) refillWait(now time.Time) (time.Duration, bool) {
	if k.RefillInterval <= 0 || !k.HasRefillAmount {
		return 0, false
	}
	last := k.LastRefillAt
	if last.IsZero() {
		last = k.CreatedAt
	}
	if now.Sub(last) > k.RefillInterval {
		return 0, true
	}
	return last.Add(k.RefillInterval).Sub(now), false
}

func checkSession(s *Session, now time.Time) Decision {
	if s.ExpiresAt.Before(now) {
		return deny(SessionExpired)
	}
	if s.User.BannedAt(now) {
		return deny(UserBanned)
	}
	return Decision{Method: MethodSession, User: s.User, Member: s.Org, CredentialID: s.ID, credHdr: s.headerID(), ExpiresAt: s.ExpiresAt}
}

// orgOwned reports whether keys of configuration id belong to
// organizations.
func (v *Verifier) orgOwned(id string) bool {
	if len(v.orgIDs) == 0 {
		return false
	}
	id = normalConfigID(id)
	for _, c := range v.orgIDs {
		if c == id {
			return true
		}
	}
	return false
}

func (v *Verifier) acceptsConfig(id string) bool {
	id = normalConfigID(id)
	for _, c := range v.configIDs {
		if c == id {
			return true
		}
	}
	return false
}

// normalConfigID folds Better-Auth's spellings of the default configuration.
func normalConfigID(id string) string {
	if id == "" {
		return "default"
	}
	return id
}
