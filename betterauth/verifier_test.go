package betterauth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeStore serves records by lookup kind and secret, and counts calls. Its
// records are not sealed, as no store's are.
type fakeStore struct {
	keys     map[string]*APIKey     // by stored hash
	sessions map[string]*Session    // by token
	tokens   map[string]*OAuthToken // by stored hash
	err      error
	calls    int
}

func (f *fakeStore) Lookup(_ context.Context, l Lookup) (Record, error) {
	f.calls++
	if f.err != nil {
		return Record{}, f.err
	}
	var r Record
	if l.Kind.Reads(KindAPIKey) {
		r.APIKey = f.keys[l.KeyHash()]
	}
	if l.Kind.Reads(KindSession) && r.APIKey == nil {
		r.Session = f.sessions[l.Secret]
	}
	if l.Kind.Reads(KindOAuth) && !r.Found() {
		r.OAuth = f.tokens[l.KeyHash()]
	}
	return r, nil
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func alice() *User { return &User{ID: "u1", Email: "alice@example.com", Name: "Alice", Role: "user"} }

func TestVerifierRules(t *testing.T) {
	t.Parallel()
	const (
		key   = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
		token = vecToken
	)
	type keyEdit func(*APIKey)
	tests := []struct {
		name      string
		editKey   keyEdit
		editSess  func(*Session)
		editUser  func(*User)
		configIDs []string
		cred      Credential
		want      Reason
		wantRetry time.Duration
	}{
		{name: "valid key", cred: apiKeyCred(key), want: Allowed},
		{name: "unknown key", cred: apiKeyCred(key + "x"), want: InvalidAPIKey},
		{name: "disabled key", editKey: func(k *APIKey) { k.Enabled = false }, cred: apiKeyCred(key), want: KeyDisabled},
		{name: "expired key", editKey: func(k *APIKey) { k.ExpiresAt = t0.Add(-time.Millisecond) }, cred: apiKeyCred(key), want: KeyExpired},
		{name: "key expiring exactly now still valid", editKey: func(k *APIKey) { k.ExpiresAt = t0 }, cred: apiKeyCred(key), want: Allowed},
		{name: "key expiring later", editKey: func(k *APIKey) { k.ExpiresAt = t0.Add(time.Hour) }, cred: apiKeyCred(key), want: Allowed},
		{name: "remaining left", editKey: func(k *APIKey) { k.HasRemaining, k.Remaining = true, 3 }, cred: apiKeyCred(key), want: Allowed},
		{name: "exhausted without refill", editKey: func(k *APIKey) { k.HasRemaining = true }, cred: apiKeyCred(key), want: UsageExceeded},
		{name: "exhausted, refill amount but no interval", editKey: func(k *APIKey) {
			k.HasRemaining, k.HasRefillAmount, k.RefillAmount = true, true, 5
		}, cred: apiKeyCred(key), want: UsageExceeded},
		{name: "exhausted, refill due since createdAt", editKey: func(k *APIKey) {
			k.HasRemaining, k.HasRefillAmount, k.RefillAmount, k.RefillInterval = true, true, 5, time.Hour
			k.CreatedAt = t0.Add(-time.Hour - time.Millisecond)
		}, cred: apiKeyCred(key), want: Allowed},
		{name: "exhausted, refill exactly at interval not yet due", editKey: func(k *APIKey) {
			k.HasRemaining, k.HasRefillAmount, k.RefillAmount, k.RefillInterval = true, true, 5, time.Hour
			k.CreatedAt = t0.Add(-time.Hour)
		}, cred: apiKeyCred(key), want: UsageExceeded},
		{name: "exhausted, lastRefillAt wins over createdAt", editKey: func(k *APIKey) {
			k.HasRemaining, k.HasRefillAmount, k.RefillAmount, k.RefillInterval = true, true, 5, time.Hour
			k.CreatedAt = t0.Add(-48 * time.Hour)
			k.LastRefillAt = t0.Add(-20 * time.Minute)
		}, cred: apiKeyCred(key), want: UsageExceeded, wantRetry: 40 * time.Minute},
		{name: "other config rejected", editKey: func(k *APIKey) { k.ConfigID = "org" }, cred: apiKeyCred(key), want: InvalidAPIKey},
		{name: "other config accepted when configured", editKey: func(k *APIKey) { k.ConfigID = "org" }, configIDs: []string{"org"}, cred: apiKeyCred(key), want: Allowed},
		{name: "empty config id is default", editKey: func(k *APIKey) { k.ConfigID = "" }, cred: apiKeyCred(key), want: Allowed},
		{name: "banned owner of key", editUser: func(u *User) { u.Banned = true }, cred: apiKeyCred(key), want: UserBanned},
		{name: "ban expired", editUser: func(u *User) { u.Banned, u.BanExpires = true, t0.Add(-time.Second) }, cred: apiKeyCred(key), want: Allowed},
		{name: "ban until later", editUser: func(u *User) { u.Banned, u.BanExpires = true, t0.Add(time.Second) }, cred: apiKeyCred(key), want: UserBanned},
		{name: "disabled beats banned", editKey: func(k *APIKey) { k.Enabled = false }, editUser: func(u *User) { u.Banned = true }, cred: apiKeyCred(key), want: KeyDisabled},
		{name: "key as bearer", cred: Credential{Kind: KindAPIKey, Source: SourceBearer, Value: key}, want: Allowed},
		{name: "invalid api key header", cred: Credential{Kind: KindInvalid, Source: SourceAPIKeyHeader}, want: InvalidAPIKey},
		{name: "invalid bearer", cred: Credential{Kind: KindInvalid, Source: SourceBearer}, want: InvalidSession},
		{name: "missing", cred: Credential{}, want: MissingCredential},

		{name: "signed cookie", cred: cookieCred(vecCookie), want: Allowed},
		{name: "unsigned cookie", cred: cookieCred(token), want: InvalidSession},
		{name: "cookie with bad signature", cred: cookieCred(token + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), want: InvalidSession},
		{name: "signed bearer", cred: bearerCred(KindSession, vecBearerSigned), want: Allowed},
		{name: "url-encoded bearer", cred: bearerCred(KindSession, vecCookie), want: Allowed},
		{name: "raw bearer token", cred: bearerCred(KindEither, token), want: Allowed},
		{name: "unknown raw bearer", cred: bearerCred(KindEither, "Zz"+token[2:]), want: InvalidSession},
		{name: "unknown signed session", cred: bearerCred(KindSession, NewSigner(vecSecret).Sign("Zz"+token[2:])), want: InvalidSession},
		{name: "expired session", editSess: func(s *Session) { s.ExpiresAt = t0.Add(-time.Millisecond) }, cred: cookieCred(vecCookie), want: SessionExpired},
		{name: "session expiring exactly now", editSess: func(s *Session) { s.ExpiresAt = t0 }, cred: cookieCred(vecCookie), want: Allowed},
		{name: "banned owner of session", editUser: func(u *User) { u.Banned = true }, cred: cookieCred(vecCookie), want: UserBanned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := alice()
			k := &APIKey{ID: "k1", ConfigID: "default", Enabled: true, CreatedAt: t0.Add(-time.Hour), User: u}
			s := &Session{ID: "s1", ExpiresAt: t0.Add(time.Hour), User: u}
			if tt.editUser != nil {
				tt.editUser(u)
			}
			if tt.editKey != nil {
				tt.editKey(k)
			}
			if tt.editSess != nil {
				tt.editSess(s)
			}
			store := &fakeStore{keys: map[string]*APIKey{HashAPIKey(key): k}, sessions: map[string]*Session{token: s}}
			v, err := NewVerifier(Options{Store: store, Secret: vecSecret, ConfigIDs: tt.configIDs, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			d, err := v.Verify(context.Background(), tt.cred)
			if err != nil {
				t.Fatalf("Verify error: %v", err)
			}
			if d.Reason != tt.want {
				t.Fatalf("reason = %v, want %v", d.Reason, tt.want)
			}
			if d.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", d.RetryAfter, tt.wantRetry)
			}
			if d.Allowed() != (tt.want == Allowed) {
				t.Errorf("Allowed() = %v", d.Allowed())
			}
			if tt.want == Allowed && (d.User != u || d.CredentialID == "") {
				t.Errorf("allowed decision lacks identity: %+v", d)
			}
		})
	}
}

func TestVerifierStoreErrorIsNotADeny(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection refused")
	v, _ := NewVerifier(Options{Store: &fakeStore{err: boom}, Secret: vecSecret})
	for _, c := range []Credential{apiKeyCred("ba_x"), cookieCred(vecCookie), bearerCred(KindEither, vecToken)} {
		d, err := v.Verify(context.Background(), c)
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
		if d.Allowed() || d.Reason != BackendUnavailable {
			t.Fatalf("decision = %v, want BackendUnavailable", d.Reason)
		}
	}
}

func TestVerifierSkipsStoreForUnverifiableCredentials(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	v, _ := NewVerifier(Options{Store: store, Secret: vecSecret})
	for _, c := range []Credential{{}, cookieCred(vecToken + ".bad"), {Kind: KindInvalid, Source: SourceBearer}} {
		if _, err := v.Verify(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	if store.calls != 0 {
		t.Fatalf("store called %d times for credentials that cannot verify", store.calls)
	}
}

func TestVerifierWithoutSecretRejectsSignedTokens(t *testing.T) {
	t.Parallel()
	v, _ := NewVerifier(Options{Store: &fakeStore{}})
	d, _ := v.Verify(context.Background(), cookieCred(vecCookie))
	if d.Reason != InvalidSession {
		t.Fatalf("reason = %v, want InvalidSession", d.Reason)
	}
}

// A sealed record (what the cache serves) and an unsealed one (what a store
// returns) give the same, encoded, headers.
func TestDecisionHeaders(t *testing.T) {
	t.Parallel()
	for _, sealed := range []bool{true, false} {
		u := &User{ID: "u1", Name: "Eve\r\nX-Auth-User-Role: admin", Email: "", Role: ""}
		rec := Record{Session: &Session{ID: "s\n1", ExpiresAt: t0, User: u}}
		if sealed {
			rec = rec.Seal()
		}
		d := checkSession(rec.Session, t0.Add(-time.Hour))
		got := map[string]string{}
		for _, h := range d.AppendHeaders(nil) {
			got[h.Name] = h.Value
		}
		want := map[string]string{
			HeaderUserID:    "u1",
			HeaderUserName:  "Eve%0D%0AX-Auth-User-Role: admin",
			HeaderMethod:    "session",
			HeaderSessionID: "s%0A1",
		}
		if len(got) != len(want) {
			t.Fatalf("sealed=%v: headers = %v, want %v", sealed, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("sealed=%v: %s = %q, want %q", sealed, k, got[k], v)
			}
		}
		if _, _, name, _ := u.HeaderValues(); name != want[HeaderUserName] || d.CredentialHeader() != want[HeaderSessionID] {
			t.Errorf("sealed=%v: placeholders %q %q", sealed, name, d.CredentialHeader())
		}
	}
	if hs := deny(InvalidAPIKey).AppendHeaders(nil); len(hs) != 0 {
		t.Errorf("deny sets headers %v", hs)
	}
}

func TestOutcomeTable(t *testing.T) {
	t.Parallel()
	want := map[Reason]struct {
		status int
		code   string
	}{
		MissingCredential:       {401, "MISSING_CREDENTIAL"},
		InvalidAPIKey:           {401, "INVALID_API_KEY"},
		KeyDisabled:             {401, "KEY_DISABLED"},
		KeyExpired:              {401, "KEY_EXPIRED"},
		UsageExceeded:           {429, "USAGE_EXCEEDED"},
		InvalidSession:          {401, "INVALID_SESSION"},
		SessionExpired:          {401, "SESSION_EXPIRED"},
		UserBanned:              {403, "USER_BANNED"},
		CredentialNotAccepted:   {401, "CREDENTIAL_NOT_ACCEPTED"},
		InsufficientRole:        {403, "INSUFFICIENT_ROLE"},
		InsufficientPermissions: {403, "INSUFFICIENT_PERMISSIONS"},
		InsufficientOrgRole:     {403, "INSUFFICIENT_ORG_ROLE"},
		IPNotAllowed:            {403, "IP_NOT_ALLOWED"},
		TooManyFailures:         {429, "TOO_MANY_FAILURES"},
		RateLimited:             {429, "RATE_LIMITED"},
		RateLimitedUnauthorized: {401, "RATE_LIMITED"},
		RateLimitExceeded:       {429, "RATE_LIMIT_EXCEEDED"},
		InvalidToken:            {401, "INVALID_TOKEN"},
		TokenExpired:            {401, "TOKEN_EXPIRED"},
		TokenRevoked:            {401, "TOKEN_REVOKED"},
		ClientDisabled:          {401, "CLIENT_DISABLED"},
		WrongAudience:           {401, "INVALID_AUDIENCE"},
		InsufficientScope:       {403, "INSUFFICIENT_SCOPE"},
		ToolNotAllowed:          {403, "TOOL_NOT_ALLOWED"},
		InvalidMCPRequest:       {400, "INVALID_MCP_REQUEST"},
		BodyTooLarge:            {413, "BODY_TOO_LARGE"},
		MCPSessionNotFound:      {404, "MCP_SESSION_NOT_FOUND"},
		BackendUnavailable:      {503, "BACKEND_UNAVAILABLE"},
	}
	for r, w := range want {
		o := r.Outcome()
		if o.Status != w.status || o.Code != w.code || o.Message == "" {
			t.Errorf("%d: got %+v, want %d %s", r, o, w.status, w.code)
		}
	}
	if len(Reasons()) != len(want)+1 {
		t.Errorf("Reasons() has %d entries, the table %d", len(Reasons()), len(want)+1)
	}
}

func apiKeyCred(v string) Credential {
	return Credential{Kind: KindAPIKey, Source: SourceAPIKeyHeader, Name: "X-Api-Key", Value: v}
}
func cookieCred(v string) Credential {
	return Credential{Kind: KindSession, Source: SourceCookie, Name: "better-auth.session_token", Value: v}
}
func bearerCred(k Kind, v string) Credential {
	return Credential{Kind: k, Source: SourceBearer, Name: "Authorization", Value: v}
}
