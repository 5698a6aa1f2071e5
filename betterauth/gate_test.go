package betterauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func newTestGate(t *testing.T, store Store, keep bool, onError func(Credential, error)) *Gate {
	t.Helper()
	v, err := NewVerifier(Options{Store: store, Secret: vecSecret})
	if err != nil {
		t.Fatal(err)
	}
	return NewGate(GateConfig{Verifier: v, KeepCredential: keep, OnError: onError})
}

// What Strip leaves of a request's headers, for each outcome.
func TestGateStrip(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): {ID: "k1", ConfigID: "default", Enabled: true, User: alice()}}}
	for _, tc := range []struct {
		name      string
		keep      bool
		in        HTTPHeader
		allowed   bool
		left      []string // names left, sorted
		removed   []string // as recorded, sorted
		cookie    string
		cookieSet bool
	}{
		{name: "allowed: every owned name and the key removed; the forged identity, which the front end overwrites, not reported",
			in:      HTTPHeader{"X-Api-Key": {key}, "X-Auth-User-Id": {"forged"}, "X_auth_user_id": {"forged"}, "X-Auth-Extra": {"x"}, "Accept": {"*/*"}},
			allowed: true, left: []string{"Accept"}, removed: []string{"X-Api-Key", "X-Auth-Extra", "X_auth_user_id"}},
		{name: "allowed: session cookies go, others stay", in: HTTPHeader{"X-Api-Key": {key}, "Cookie": {"a=1; better-auth.session_token=t.s; better-auth.session_data=e30; b=2"}},
			allowed: true, left: []string{"Cookie"}, removed: []string{"X-Api-Key"}, cookie: "a=1; b=2", cookieSet: true},
		{name: "allowed, credential kept", keep: true, in: HTTPHeader{"X-Api-Key": {key}, "X-Auth-Extra": {"x"}, "Cookie": {"better-auth.session_token=t.s"}},
			allowed: true, left: []string{"Cookie", "X-Api-Key"}, removed: []string{"X-Auth-Extra"}, cookie: "better-auth.session_token=t.s"},
		{name: "denied: every owned name goes, the credential is not touched",
			in:   HTTPHeader{"X-Api-Key": {"ba_unknown"}, "X-Auth-User-Id": {"forged"}, "x-AUTH-method": {"x"}},
			left: []string{"X-Api-Key"}, removed: []string{"X-Auth-User-Id", "x-AUTH-method"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGate(t, store, tc.keep, nil)
			res := g.Decide(context.Background(), tc.in, netip.Addr{})
			if res.Allowed() != tc.allowed {
				t.Fatalf("allowed %v (%v), want %v", res.Allowed(), res.Decision.Reason, tc.allowed)
			}
			var removed []string
			cookieSet := res.Strip(tc.in, &removed)
			var left []string
			for name := range tc.in {
				left = append(left, name)
			}
			slices.Sort(left)
			slices.Sort(removed)
			if !slices.Equal(left, tc.left) || !slices.Equal(removed, tc.removed) {
				t.Fatalf("left %v removed %v, want left %v removed %v", left, removed, tc.left, tc.removed)
			}
			if got := tc.in["Cookie"]; cookieSet != tc.cookieSet || (tc.cookie != "" && (len(got) != 1 || got[0] != tc.cookie)) {
				t.Fatalf("cookie %q (set %v), want %q (set %v)", got, cookieSet, tc.cookie, tc.cookieSet)
			}
			// Without a list to record into, the edits are the same.
			again := HTTPHeader{}
			for k, v := range tc.in {
				again[k] = v
			}
			if res.Strip(again, nil); len(again) != len(tc.in) {
				t.Fatalf("a second Strip changed %v into %v", tc.in, again)
			}
		})
	}
}

// A failed lookup is a 503 with the error kept, heard by OnError only while
// the caller still waits.
func TestGateLookupFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	var heard []error
	g := newTestGate(t, &fakeStore{err: boom}, false, func(_ Credential, err error) { heard = append(heard, err) })
	hdr := HTTPHeader{"X-Api-Key": {"ba_x"}}
	res := g.Decide(context.Background(), hdr, netip.Addr{})
	if res.Allowed() || res.Status != 503 || !errors.Is(res.Err, boom) || res.Decision.Reason != BackendUnavailable || len(res.Body) == 0 {
		t.Fatalf("%+v", res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.Decide(ctx, hdr, netip.Addr{})
	if len(heard) != 1 {
		t.Fatalf("OnError heard %d failures, want 1 (not the one whose caller left)", len(heard))
	}
}

// A route's rules refuse verified credentials that lack what it asks, with
// the answer naming what is missing, and they hold on a stream's recheck.
func TestGateRules(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	user := func(role string) *User { u := alice(); u.Role = role; return u }
	for _, tc := range []struct {
		name  string
		role  string
		rules Rules
		want  Reason
	}{
		{"no rules", "user", Rules{}, Allowed},
		{"keys accepted", "user", Rules{Methods: []Method{MethodAPIKey}}, Allowed},
		{"sessions only", "user", Rules{Methods: []Method{MethodSession}}, CredentialNotAccepted},
		{"one of the roles", "admin", Rules{Roles: []string{"support", "admin"}}, Allowed},
		{"one of several stored roles", "user, admin", Rules{Roles: []string{"admin"}}, Allowed},
		{"role not held", "user", Rules{Roles: []string{"admin"}}, InsufficientRole},
		{"letter case counts", "Admin", Rules{Roles: []string{"admin"}}, InsufficientRole},
		{"a prefix is not the role", "administrator", Rules{Roles: []string{"admin"}}, InsufficientRole},
		{"no role at all", "", Rules{Roles: []string{"admin"}}, InsufficientRole},
		{"kind checked before role", "admin", Rules{Methods: []Method{MethodSession}, Roles: []string{"admin"}}, CredentialNotAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): {ID: "k1", ConfigID: "default", Enabled: true, User: user(tc.role)}}}
			v, _ := NewVerifier(Options{Store: store})
			g := NewGate(GateConfig{Verifier: v, Rules: tc.rules})
			hdr := HTTPHeader{"X-Api-Key": {key}, "X-Auth-User-Id": {"forged"}}
			res := g.Decide(context.Background(), hdr, netip.Addr{})
			if res.Decision.Reason != tc.want || res.Allowed() != (tc.want == Allowed) {
				t.Fatalf("%v, want %v", res.Decision.Reason, tc.want)
			}
			if g.Recheck(context.Background(), res.Credential, res.Client) != (tc.want == Allowed) {
				t.Fatal("the recheck disagrees")
			}
			if tc.want == Allowed {
				return
			}
			// A refusal carries no identity and removes every owned header.
			res.Strip(hdr, nil)
			if len(res.Decision.AppendHeaders(nil)) != 0 || len(hdr["X-Auth-User-Id"]) != 0 || res.Status != tc.want.Outcome().Status {
				t.Fatalf("refused with identity %v, headers %v, status %d", res.Decision.AppendHeaders(nil), hdr, res.Status)
			}
		})
	}
	if err := (Rules{Roles: []string{"a,b"}}).Validate(); err == nil {
		t.Error("a role with a comma validated")
	}
	if _, err := ParseMethod("apikey"); err == nil {
		t.Error("apikey parsed as a credential kind")
	}
}

// Permissions as Better-Auth's role(statements).authorize(request) with its
// default AND connector decides them (better-auth/plugins/access).
func TestPermissionsGrant(t *testing.T) {
	t.Parallel()
	held := ParsePermissions(`{"files": ["read", "write"], "projects": ["list"], "odd": "read", "none": []}`)
	for _, tc := range []struct {
		name string
		want Permissions
		ok   bool
	}{
		{"one action", Permissions{"files": {"read"}}, true},
		{"every action of a resource", Permissions{"files": {"read", "write"}}, true},
		{"every resource", Permissions{"files": {"write"}, "projects": {"list"}}, true},
		{"an action not held", Permissions{"files": {"read", "delete"}}, false},
		{"a resource not held", Permissions{"files": {"read"}, "billing": {"read"}}, false},
		{"no wildcard", Permissions{"files": {"*"}}, false},
		{"exact strings", Permissions{"files": {"READ"}}, false},
		{"an empty request", Permissions{}, false},
		{"a resource with no actions asked", Permissions{"files": {}}, false},
		{"a resource held with no actions", Permissions{"none": {"read"}}, false},
		{"a value that is not a list grants nothing", Permissions{"odd": {"read"}}, false},
	} {
		if got := held.Grants(tc.want); got != tc.ok {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.ok)
		}
	}
	// Lists with other values in them, as Better-Auth's includes() sees
	// them: a string is found among them, nothing else is a string.
	for _, tc := range []struct {
		text string
		want Permissions
		ok   bool
	}{
		{`{"files": ["read", 1, {"a": 1}, ["write"]]}`, Permissions{"files": {"read"}}, true},
		{`{"files": ["read", 1, {"a": 1}, ["write"]]}`, Permissions{"files": {"write"}}, false},
		{`{"files": ["read", null]}`, Permissions{"files": {""}}, false},
		{`{"files": ["read", false]}`, Permissions{"files": {"false"}}, false},
		{`{"files": ["write"], "files": ["read"]}`, Permissions{"files": {"read"}}, true},
		{`{"files": ["read"], "files": 1}`, Permissions{"files": {"read"}}, false},
	} {
		if got := ParsePermissions(tc.text).Grants(tc.want); got != tc.ok {
			t.Errorf("%s grants %v: %v, want %v", tc.text, tc.want, got, tc.ok)
		}
	}
	for _, text := range []string{"", "null", "not json", `["files"]`, `{"files": "read"`} {
		if p := ParsePermissions(text); p.Grants(Permissions{"files": {"read"}}) {
			t.Errorf("%q grants files:read", text)
		}
	}
}

// A route that requires permissions admits keys that hold them, and
// neither other keys nor sessions.
func TestGatePermissionRule(t *testing.T) {
	t.Parallel()
	const key, token = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp", vecToken
	k := &APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: alice(), Permissions: ParsePermissions(`{"files":["read"]}`)}
	store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): k},
		sessions: map[string]*Session{token: {ID: "s1", ExpiresAt: t0.Add(time.Hour), User: alice()}}}
	v, _ := NewVerifier(Options{Store: store, Secret: vecSecret, Now: func() time.Time { return t0 }})
	for want, reason := range map[string]Reason{`{"files":["read"]}`: Allowed, `{"files":["write"]}`: InsufficientPermissions} {
		var p Permissions
		json.Unmarshal([]byte(want), &p)
		g := NewGate(GateConfig{Verifier: v, Rules: Rules{Permissions: p}})
		if res := g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, netip.Addr{}); res.Decision.Reason != reason {
			t.Errorf("key, %s: %v, want %v", want, res.Decision.Reason, reason)
		}
		if res := g.Decide(context.Background(), HTTPHeader{"Authorization": {"Bearer " + NewSigner(vecSecret).Sign(token)}}, netip.Addr{}); res.Decision.Reason != InsufficientPermissions {
			t.Errorf("session, %s: %v, want INSUFFICIENT_PERMISSIONS", want, res.Decision.Reason)
		}
	}
	if err := (Rules{Permissions: Permissions{"files": {}}}).Validate(); err == nil {
		t.Error("a resource without actions validated")
	}
}

// Address rules refuse a client before its credential is read: no lookup.
func TestGateAddressRules(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	prefixes := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			p, err := ParsePrefix(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		allow, deny []netip.Prefix
		client      string
		ok          bool
	}{
		{"no rules, no address", nil, nil, "", true},
		{"inside the allowed prefix", prefixes("10.0.0.0/8"), nil, "10.1.2.3", true},
		{"outside it", prefixes("10.0.0.0/8"), nil, "192.168.1.1", false},
		{"an IPv4-mapped IPv6 address is the IPv4 one", prefixes("10.0.0.0/8"), nil, "::ffff:10.1.2.3", true},
		{"one address", prefixes("2001:db8::1"), nil, "2001:db8::1", true},
		{"its neighbour", prefixes("2001:db8::1"), nil, "2001:db8::2", false},
		{"denied inside an allowed prefix", prefixes("10.0.0.0/8"), prefixes("10.9.0.0/16"), "10.9.1.1", false},
		{"deny alone", nil, prefixes("203.0.113.0/24"), "198.51.100.7", true},
		{"deny alone, inside", nil, prefixes("203.0.113.0/24"), "203.0.113.9", false},
		{"an address the front end cannot tell", prefixes("0.0.0.0/0"), nil, "", false},
		{"the same with deny alone", nil, prefixes("203.0.113.0/24"), "", false},
		// A zone names the interface, not the client (the HTTP mode's
		// peer can carry one): it must neither dodge a deny nor fail an allow.
		{"a link-local peer with a zone, denied", nil, prefixes("fe80::/10"), "fe80::1%eth0", false},
		{"a link-local peer with a zone, allowed", prefixes("fe80::/10"), nil, "fe80::1%eth0", true},
		// A rule written as an IPv4-mapped prefix is the IPv4 one, since
		// clients are compared unmapped.
		{"an IPv4-mapped deny prefix", nil, prefixes("::ffff:10.0.0.0/104"), "10.1.2.3", false},
		{"an IPv4-mapped deny address", nil, prefixes("::ffff:10.1.2.3"), "::ffff:10.1.2.3", false},
		{"an IPv4-mapped allow prefix", prefixes("::ffff:10.0.0.0/104"), nil, "::ffff:10.1.2.3", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): {ID: "k1", ConfigID: "default", Enabled: true, User: alice()}}}
			v, _ := NewVerifier(Options{Store: store})
			g := NewGate(GateConfig{Verifier: v, Rules: Rules{AllowIPs: tc.allow, DenyIPs: tc.deny}})
			var client netip.Addr
			if tc.client != "" {
				client = netip.MustParseAddr(tc.client)
			}
			res := g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, client)
			if res.Allowed() != tc.ok {
				t.Fatalf("allowed %v (%v), want %v", res.Allowed(), res.Decision.Reason, tc.ok)
			}
			if !tc.ok && (res.Decision.Reason != IPNotAllowed || res.Status != 403 || store.calls != 0) {
				t.Fatalf("%v %d after %d lookups", res.Decision.Reason, res.Status, store.calls)
			}
		})
	}
	for _, bad := range []string{"10.0.0.1/8", "::ffff:0:0/80", "fe80::1%eth0"} {
		if p, err := ParsePrefix(bad); err == nil {
			t.Errorf("%q parsed as %v", bad, p)
		}
	}
}

// fakeShield blocks the addresses it is told to, and records failures.
type fakeShield struct {
	blocked map[netip.Addr]bool
	failed  []netip.Addr
}

func (f *fakeShield) Blocked(a netip.Addr) (time.Duration, bool) {
	return 1500 * time.Millisecond, f.blocked[a]
}
func (f *fakeShield) Failed(a netip.Addr) { f.failed = append(f.failed, a) }

// A shielded gate refuses a blocked address before any lookup, and counts
// unknown credentials only: not a missing one, nor a genuine key that is
// disabled or refused by a rule.
func TestGateShield(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): {ID: "k1", ConfigID: "default", Enabled: true, User: alice()}}}
	v, _ := NewVerifier(Options{Store: store})
	guesser, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	sh := &fakeShield{blocked: map[netip.Addr]bool{guesser: true}}
	g := NewGate(GateConfig{Verifier: v, Shield: sh, Rules: Rules{Roles: []string{"admin"}}})
	if !g.WantsClient() {
		t.Fatal("a shielded gate does not ask for the client's address")
	}
	res := g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, guesser)
	if res.Decision.Reason != TooManyFailures || res.Status != 429 || store.calls != 0 || !slices.Contains(res.Headers, Header{"Retry-After", "2"}) {
		t.Fatalf("blocked: %v %d %v after %d lookups", res.Decision.Reason, res.Status, res.Headers, store.calls)
	}
	v2, _ := NewVerifier(Options{Store: store, Secret: vecSecret})
	g = NewGate(GateConfig{Verifier: v2, Shield: sh})
	stale := NewSigner(vecSecret).Sign(vecToken) // signed by the app, gone from the database
	for _, hdr := range []HTTPHeader{
		{},                            // missing: not counted
		{"X-Api-Key": {key}},          // genuine
		{"X-Api-Key": {"ba_unknown"}}, // counted
		{"Authorization": {"Bearer " + vecToken}},                                                   // a raw token: counted
		{"Authorization": {"Bearer " + vecToken + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}, // forged signature: counted
		{"Authorization": {"Bearer " + stale}},                                                      // a stale session: not counted
	} {
		g.Decide(context.Background(), hdr, other)
	}
	if len(sh.failed) != 3 {
		t.Fatalf("%d failures counted, want 3 (the unknown key, the raw token, the forged signature)", len(sh.failed))
	}
}

// fakeLimiter limits after allow requests, and records what it was asked.
type fakeLimiter struct {
	allow int
	seen  []string // the credential ids asked about
	byIP  bool
}

func (f *fakeLimiter) Limit(_ context.Context, d Decision, _ netip.Addr) (time.Duration, bool) {
	f.seen = append(f.seen, d.CredentialID)
	if len(f.seen) > f.allow {
		return 2500 * time.Millisecond, true
	}
	return 0, false
}
func (f *fakeLimiter) UsesClient() bool { return f.byIP }

// A rate-limited gate asks its limiter only about requests that passed the
// credential and the rules (a refused request spends nothing), and answers
// 429 RATE_LIMIT_EXCEEDED with Retry-After rounded up, without identity.
func TestGateLimiter(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): {ID: "k1", ConfigID: "default", Enabled: true, User: alice()}}}
	v, _ := NewVerifier(Options{Store: store})
	lim := &fakeLimiter{allow: 1}
	g := NewGate(GateConfig{Verifier: v, Limiter: lim, Rules: Rules{DenyIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}})
	ctx, ok := context.Background(), netip.MustParseAddr("198.51.100.1")
	for _, tc := range []struct {
		hdr    HTTPHeader
		client netip.Addr
		want   Reason
	}{
		{HTTPHeader{}, ok, MissingCredential},
		{HTTPHeader{"X-Api-Key": {"ba_unknown"}}, ok, InvalidAPIKey},
		{HTTPHeader{"X-Api-Key": {key}}, netip.MustParseAddr("192.0.2.1"), IPNotAllowed},
		{HTTPHeader{"X-Api-Key": {key}}, ok, Allowed},
		{HTTPHeader{"X-Api-Key": {key}}, ok, RateLimitExceeded},
	} {
		res := g.Decide(ctx, tc.hdr, tc.client)
		if res.Decision.Reason != tc.want {
			t.Fatalf("%v: %v, want %v", tc.hdr, res.Decision.Reason, tc.want)
		}
		if tc.want == RateLimitExceeded {
			hdr := HTTPHeader{"X-Api-Key": {key}}
			res.Strip(hdr, nil)
			if res.Status != 429 || !slices.Contains(res.Headers, Header{"Retry-After", "3"}) ||
				len(res.Decision.AppendHeaders(nil)) != 0 || res.Decision.Method != MethodAPIKey || len(hdr["X-Api-Key"]) == 0 {
				t.Fatalf("limited: %d %v %v, upstream headers %v", res.Status, res.Headers, res.Decision, hdr)
			}
			var body struct{ Code string }
			if json.Unmarshal(res.Body, &body); body.Code != "RATE_LIMIT_EXCEEDED" {
				t.Fatalf("body %s", res.Body)
			}
		}
	}
	if !slices.Equal(lim.seen, []string{"k1", "k1"}) {
		t.Fatalf("the limiter heard %v; want only the two verified requests", lim.seen)
	}
	if g.WantsClient() != true {
		t.Fatal("address rules")
	}
	g = NewGate(GateConfig{Verifier: v, Limiter: lim})
	if g.WantsClient() {
		t.Fatal("wants the client with no limit by address")
	}
	lim.byIP = true
	if !g.WantsClient() {
		t.Fatal("a limit by address does not get the client")
	}
	// A stream's recheck spends nothing.
	n := len(lim.seen)
	g.Recheck(ctx, apiKeyCred(key), netip.Addr{})
	if len(lim.seen) != n {
		t.Fatal("Recheck spent a limit")
	}
}

// fakeMeter allows allow uses, then refuses them as rate limited, and
// records the keys it counted.
type fakeMeter struct {
	allow   int
	counted []string
	err     error
}

func (f *fakeMeter) Use(_ context.Context, k *APIKey) (Usage, error) {
	if f.err != nil {
		return Usage{}, f.err
	}
	f.counted = append(f.counted, k.ID)
	u := Usage{HasRemaining: true, Remaining: int64(10 - len(f.counted)), Limit: int64(f.allow), Window: time.Minute,
		Left: int64(f.allow - len(f.counted)), Reset: time.Minute}
	if len(f.counted) > f.allow {
		u.Reason, u.RetryAfter, u.Left, u.Reset = RateLimited, 1500*time.Millisecond, 0, 1500*time.Millisecond
	}
	return u, nil
}

// The meter counts only what every other check let through, never a
// session or a stream's recheck; its answer reaches the headers (upstream:
// X-Auth-Key-Remaining; client: the RateLimit fields) and its refusal the
// status, Retry-After included; a failure to count fails closed.
func TestGateMeter(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): {ID: "k1", ConfigID: "default", Enabled: true,
		HasRemaining: true, Remaining: 0, User: alice()}}}
	v, _ := NewVerifier(Options{Store: store, Metered: true})
	m := &fakeMeter{allow: 1}
	lim := &fakeLimiter{allow: 100}
	g := NewGate(GateConfig{Verifier: v, Meter: m, Limiter: lim,
		Rules: Rules{DenyIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Roles: []string{"user"}}})
	ctx, ok := context.Background(), netip.MustParseAddr("198.51.100.1")
	keyHdr := func() HTTPHeader { return HTTPHeader{"X-Api-Key": {key}} }
	// Refused by an address rule: not counted.
	if res := g.Decide(ctx, keyHdr(), netip.MustParseAddr("192.0.2.1")); res.Decision.Reason != IPNotAllowed || len(m.counted) != 0 {
		t.Fatalf("denied by address: %v, counted %v", res.Decision.Reason, m.counted)
	}
	// Allowed (the cached remaining of 0 is the meter's to judge): counted.
	res := g.Decide(ctx, keyHdr(), ok)
	if !res.Allowed() || !slices.Equal(m.counted, []string{"k1"}) {
		t.Fatalf("first use: %v, counted %v", res.Decision.Reason, m.counted)
	}
	if hs := res.Decision.AppendHeaders(nil); !slices.Contains(hs, Header{HeaderKeyRemaining, "9"}) {
		t.Fatalf("upstream headers %v", hs)
	}
	if hs := res.Decision.Usage.AppendClientHeaders(nil); len(hs) != 2 || hs[1] != (Header{HeaderRateLimit, `"api-key-rate-limit";r=0;t=60`}) {
		t.Fatalf("client headers %v", hs)
	}
	res = g.Decide(ctx, keyHdr(), ok)
	if res.Status != 429 || !slices.Contains(res.Headers, Header{"Retry-After", "2"}) ||
		!slices.Contains(res.Headers, Header{HeaderRateLimit, `"api-key-rate-limit";r=0;t=2`}) || len(res.Decision.AppendHeaders(nil)) != 0 {
		t.Fatalf("limited: %d %v %v", res.Status, res.Headers, res.Decision)
	}
	var body struct{ Code string }
	if json.Unmarshal(res.Body, &body); body.Code != "RATE_LIMITED" {
		t.Fatalf("body %s", res.Body)
	}
	// A stream's recheck counts nothing.
	n := len(m.counted)
	if !g.Recheck(ctx, apiKeyCred(key), ok) || len(m.counted) != n {
		t.Fatalf("recheck counted (%d → %d)", n, len(m.counted))
	}
	// A meter that cannot count fails the request closed.
	var heard []error
	boom := errors.New("boom")
	g = NewGate(GateConfig{Verifier: v, Meter: &fakeMeter{err: boom}, OnError: func(_ Credential, err error) { heard = append(heard, err) }})
	if res := g.Decide(ctx, keyHdr(), ok); res.Status != 503 || !errors.Is(res.Err, boom) || len(heard) != 1 {
		t.Fatalf("meter failure: %d %v, heard %v", res.Status, res.Err, heard)
	}
}

// A decision on a record at hand allocates nothing, with every feature that
// can be configured without I/O: rules, address rules, per-key lists, a
// shield and a limiter (interfaces taking the decision must not make the
// result escape).
func TestGateDecideAllocatesNothing(t *testing.T) {
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	rec := Record{APIKey: &APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: alice()}}.Seal()
	v, _ := NewVerifier(Options{Store: staticStore{rec}})
	client := netip.MustParseAddr("198.51.100.1")
	for name, cfg := range map[string]GateConfig{
		"plain": {Verifier: v},
		"everything": {Verifier: v, Shield: &fakeShield{}, Limiter: &nopLimiter{}, KeyAllowedIPs: true,
			Rules:    Rules{Roles: []string{"user"}, AllowIPs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
			Observer: &countingObserver{}},
	} {
		g := NewGate(cfg)
		h := HTTPHeader{"X-Api-Key": {key}}
		if a := testing.AllocsPerRun(100, func() {
			if res := g.Decide(context.Background(), h, client); !res.Allowed() {
				t.Fatal(res.Decision.Reason)
			}
		}); a != 0 {
			t.Errorf("%s: %v allocations per decision", name, a)
		}
	}
}

// An OAuth token's decision costs what an API key's does: nothing.
func TestGateDecideOAuthAllocatesNothing(t *testing.T) {
	g, h := oauthGate()
	if a := testing.AllocsPerRun(100, func() {
		if res := g.Decide(context.Background(), h, netip.Addr{}); !res.Allowed() {
			t.Fatal(res.Decision.Reason)
		}
	}); a != 0 {
		t.Errorf("%v allocations per decision", a)
	}
}

type countingObserver struct{ n [4][NumReasons]int }

func (o *countingObserver) Decided(m Method, r Reason) { o.n[m][r]++ }

// The observer hears every decision, refusals before any lookup too.
func TestGateObserverHearsEveryDecision(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	rec := Record{APIKey: &APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: alice()}}.Seal()
	v, _ := NewVerifier(Options{Store: staticStore{rec}})
	o := &countingObserver{}
	g := NewGate(GateConfig{Verifier: v, Observer: o,
		Rules: Rules{AllowIPs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}})
	in, out := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")
	g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, in)
	g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, in)
	g.Decide(context.Background(), HTTPHeader{}, in)
	g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, out)
	// An unknown key: the method of its kind.
	empty, _ := NewVerifier(Options{Store: staticStore{}})
	NewGate(GateConfig{Verifier: empty, Observer: o}).Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, in)
	if o.n[MethodAPIKey][Allowed] != 2 || o.n[MethodNone][MissingCredential] != 1 || o.n[MethodNone][IPNotAllowed] != 1 ||
		o.n[MethodAPIKey][InvalidAPIKey] != 1 {
		t.Errorf("observed %v", o.n)
	}
}

// A lookup failed because the request itself ended (the client left) is
// not counted: nobody got the answer, and BACKEND_UNAVAILABLE would show a
// database outage that was not. One the database failed on its own is.
func TestGateObserverSkipsRequestsThatEnded(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	v, _ := NewVerifier(Options{Store: &fakeStore{err: context.Canceled}})
	o := &countingObserver{}
	g := NewGate(GateConfig{Verifier: v, Observer: o})
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if res := g.Decide(ended, HTTPHeader{"X-Api-Key": {key}}, netip.Addr{}); res.Err == nil {
		t.Fatal("the lookup did not fail")
	}
	if o.n[MethodAPIKey][BackendUnavailable] != 0 {
		t.Errorf("a request that ended was counted: %v", o.n)
	}
	g.Decide(context.Background(), HTTPHeader{"X-Api-Key": {key}}, netip.Addr{})
	if o.n[MethodAPIKey][BackendUnavailable] != 1 {
		t.Errorf("a failed lookup was not counted: %v", o.n)
	}
}

type nopLimiter struct{}

func (nopLimiter) Limit(context.Context, Decision, netip.Addr) (time.Duration, bool) { return 0, false }
func (nopLimiter) UsesClient() bool                                                  { return true }

// With a protected resource, 401 challenges name its metadata and the
// scopes a token needs (RFC 9728 §5.1), with the error only when a
// credential was sent; other answers carry no challenge.
func TestChallengeNamesTheResourceMetadata(t *testing.T) {
	t.Parallel()
	a := NewAnswersFor(Challenge{ResourceMetadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", Scope: "tools:read"})
	find := func(hs []Header) string {
		for _, h := range hs {
			if h.Name == "WWW-Authenticate" {
				return h.Value
			}
		}
		return ""
	}
	_, hs, _ := a.For(Decision{Reason: MissingCredential})
	if got := find(hs); got != `Bearer realm="better-auth", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="tools:read"` {
		t.Errorf("no credential: %s", got)
	}
	_, hs, _ = a.For(Decision{Reason: InvalidAPIKey})
	if got := find(hs); got != `Bearer realm="better-auth", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="tools:read", error="invalid_token", error_description="Invalid API key."` {
		t.Errorf("a bad credential: %s", got)
	}
	if _, hs, _ = a.For(Decision{Reason: UserBanned}); find(hs) != "" {
		t.Errorf("a 403 with a challenge: %v", hs)
	}
}

// fakeAuthorizer refuses what its function says, and notes what it was
// asked about.
type fakeAuthorizer struct {
	asked []Decision
	why   Reason
}

func (f *fakeAuthorizer) Authorize(d Decision) Reason {
	f.asked = append(f.asked, d)
	return f.why
}

// An Authorizer is asked only about requests whose credential verified and
// passed the route's rules, and a request it refuses spends no rate limit
// and no usage; its reason is the answer, the method kept for the logs.
func TestGateAuthorizer(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): {ID: "k1", ConfigID: "default", Enabled: true,
		HasRemaining: true, Remaining: 5, User: alice()}}}
	v, _ := NewVerifier(Options{Store: store, Metered: true})
	m, lim := &fakeMeter{allow: 100}, &fakeLimiter{allow: 100}
	g := NewGate(GateConfig{Verifier: v, Meter: m, Limiter: lim, Rules: Rules{Roles: []string{"admin"}}})
	ctx, client := context.Background(), netip.MustParseAddr("198.51.100.1")
	hdr := HTTPHeader{"X-Api-Key": {key}}

	a := &fakeAuthorizer{why: ToolNotAllowed}
	if res := g.DecideFor(ctx, hdr, client, a); res.Decision.Reason != InsufficientRole || len(a.asked) != 0 {
		t.Fatalf("refused by the route's rules: %v, authorizer asked %d times", res.Decision.Reason, len(a.asked))
	}
	g = NewGate(GateConfig{Verifier: v, Meter: m, Limiter: lim})
	res := g.DecideFor(ctx, hdr, client, a)
	if res.Decision.Reason != ToolNotAllowed || res.Decision.Method != MethodAPIKey || res.Status != 403 ||
		len(a.asked) != 1 || a.asked[0].CredentialID != "k1" {
		t.Fatalf("refused by the authorizer: %+v, asked %v", res.Decision, a.asked)
	}
	if len(m.counted)+len(lim.seen) != 0 {
		t.Fatalf("a refused request spent usage %v and limits %v", m.counted, lim.seen)
	}
	a.why = Allowed
	if res := g.DecideFor(ctx, hdr, client, a); !res.Allowed() || len(m.counted) != 1 || len(lim.seen) != 1 {
		t.Fatalf("allowed: %v, counted %v, limited %v", res.Decision.Reason, m.counted, lim.seen)
	}
	if res := g.DecideFor(ctx, HTTPHeader{}, client, a); res.Decision.Reason != MissingCredential || len(a.asked) != 2 {
		t.Fatalf("no credential: %v, asked %d times", res.Decision.Reason, len(a.asked))
	}
}

// A request that needs more scopes than the route (an MCP tool's) gets the
// route's challenge with them after the token's and the route's, each
// once; the route's own step-up is the same words.
func TestStepUpForMoreScopes(t *testing.T) {
	t.Parallel()
	a := NewAnswersFor(Challenge{Realm: `a "b"`, NeededScope: "mcp:read",
		ResourceMetadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"})
	scope, got := a.StepUp([]string{"openid", "mcp:read"}, []string{"mcp:admin", "openid", "a b"})
	want := `Bearer realm="a \"b\"", error="insufficient_scope", scope="openid mcp:read mcp:admin", ` +
		`resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", ` +
		`error_description="The credential lacks a scope this request needs."`
	if scope != "openid mcp:read mcp:admin" || got != want {
		t.Fatalf("got  %s %s\nwant %s", scope, got, want)
	}
	_, hs, _ := a.For(Decision{Reason: InsufficientScope, Method: MethodOAuth, Scopes: []string{"openid", "mcp:read"}})
	if _, route := a.StepUp([]string{"openid", "mcp:read"}, nil); hs[len(hs)-1] != (Header{"WWW-Authenticate", route}) {
		t.Fatalf("the route's step-up: %v", hs)
	}
}
