package caddyauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
)

const (
	testSecret = "handler-test-secret-0123456789abcdefghijklmnop"
	testKey    = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	testToken  = "aoJx7uLCwsPeAyLVHnBVFjacXa1LpN7M"
)

// fakeStore knows one key and one session of one user.
type fakeStore struct {
	key     *betterauth.APIKey
	session *betterauth.Session
	err     error
	calls   int
}

func (f *fakeStore) Lookup(_ context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	f.calls++
	if f.err != nil {
		return betterauth.Record{}, f.err
	}
	var r betterauth.Record
	if l.Kind != betterauth.KindSession && l.Secret == testKey {
		r.APIKey = f.key
	}
	if l.Kind != betterauth.KindAPIKey && l.Secret == testToken {
		r.Session = f.session
	}
	return r.Seal(), nil
}

func newFakeStore() *fakeStore {
	u := &betterauth.User{ID: "u1", Email: "alice@example.com", Name: "Alice", Role: "admin"}
	return &fakeStore{
		key:     &betterauth.APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: u},
		session: &betterauth.Session{ID: "s1", ExpiresAt: time.Now().Add(time.Hour), User: u},
	}
}

func newHandler(t testing.TB, h *Handler, store betterauth.Store) *Handler {
	t.Helper()
	h.logger = zap.NewNop()
	o := h.Options
	o.Secret = testSecret
	gate, err := gateway.NewGate(o, store, h.logger)
	if err != nil {
		t.Fatal(err)
	}
	h.gate = gate
	return h
}

// recorder is the next handler: it records the request it was given.
type recorder struct {
	called bool
	header http.Header
	err    error
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	rec.called = true
	rec.header = r.Header.Clone()
	if rec.err != nil {
		return rec.err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func newRequest(hdr http.Header) (*http.Request, *caddy.Replacer) {
	req := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
	return req.WithContext(ctx), repl
}

func signed(token string) string { return betterauth.NewSigner(testSecret).Sign(token) }

func TestAllowedRequestCarriesIdentityOnly(t *testing.T) {
	t.Parallel()
	h := newHandler(t, &Handler{}, newFakeStore())
	forged := http.Header{
		"X-Auth-User-Id": {"attacker"}, "X-Auth-Key-Id": {"forged", "forged2"}, "X_auth_user_role": {"root"},
		"X-Auth-Session-Id": {"forged"}, "X-Api-Key": {testKey}, "Other": {"kept"},
	}
	req, repl := newRequest(forged)
	next := &recorder{}
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, req, next); err != nil || !next.called {
		t.Fatalf("err %v, next called %v", err, next.called)
	}
	want := http.Header{
		"X-Auth-User-Id": {"u1"}, "X-Auth-User-Email": {"alice@example.com"}, "X-Auth-User-Name": {"Alice"},
		"X-Auth-User-Role": {"admin"}, "X-Auth-Method": {"api_key"}, "X-Auth-Key-Id": {"k1"}, "Other": {"kept"},
	}
	if len(next.header) != len(want) {
		t.Errorf("upstream headers = %v, want %v", next.header, want)
	}
	for k, v := range want {
		if got := next.header[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for ph, v := range map[string]string{
		"http.auth.user.id": "u1", "http.auth.user.email": "alice@example.com", "http.auth.user.role": "admin",
		"http.auth.user.method": "api_key", "http.auth.user.key_id": "k1",
	} {
		if got, _ := repl.GetString(ph); got != v {
			t.Errorf("{%s} = %q, want %q", ph, got, v)
		}
	}
	if _, ok := repl.Get("http.auth.user.session_id"); ok {
		t.Error("{http.auth.user.session_id} set for an API key")
	}
}

func TestDeniedRequestsNeverReachNext(t *testing.T) {
	t.Parallel()
	store := newFakeStore()
	store.key.Enabled = false
	h := newHandler(t, &Handler{Options: gateway.Options{Realm: `mcp "x"`}}, store)
	for _, tc := range []struct {
		name   string
		hdr    http.Header
		status int
		code   string
		chall  string
	}{
		{"missing", http.Header{"X-Auth-User-Id": {"attacker"}}, 401, "MISSING_CREDENTIAL", `Bearer realm="mcp \"x\""`},
		{"disabled", http.Header{"X-Api-Key": {testKey}}, 401, "KEY_DISABLED", `Bearer realm="mcp \"x\"", error="invalid_token", error_description="API Key is disabled"`},
		{"bad signature", http.Header{"Cookie": {"better-auth.session_token=" + testToken + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}, 401, "INVALID_SESSION", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, repl := newRequest(tc.hdr)
			next := &recorder{}
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, req, next); err != nil {
				t.Fatal(err)
			}
			if next.called {
				t.Fatal("next called")
			}
			var body struct{ Code, Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != tc.status || body.Code != tc.code {
				t.Fatalf("got %d %s", w.Code, w.Body)
			}
			if tc.chall != "" && w.Header().Get("WWW-Authenticate") != tc.chall {
				t.Errorf("WWW-Authenticate = %q, want %q", w.Header().Get("WWW-Authenticate"), tc.chall)
			}
			if got, _ := repl.GetString("http.auth.better_auth.code"); got != tc.code {
				t.Errorf("code placeholder = %q", got)
			}
			if _, ok := req.Header["X-Auth-User-Id"]; ok {
				t.Error("forged header left on a denied request")
			}
		})
	}
}

func TestBackendFailureIs503AndNotCached(t *testing.T) {
	t.Parallel()
	inner := newFakeStore()
	inner.err = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	h := newHandler(t, &Handler{}, cache.New(inner, cache.Options{}))
	for range 2 {
		req, _ := newRequest(http.Header{"Authorization": {"Bearer " + signed(testToken)}})
		next := &recorder{}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req, next)
		if w.Code != 503 || next.called || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "BACKEND_UNAVAILABLE") {
			t.Fatalf("got %d %s (next called %v)", w.Code, w.Body, next.called)
		}
	}
	if inner.calls != 2 {
		t.Fatalf("store asked %d times; an error must not be cached", inner.calls)
	}
	inner.err = nil
	req, _ := newRequest(http.Header{"Authorization": {"Bearer " + signed(testToken)}})
	w := httptest.NewRecorder()
	if h.ServeHTTP(w, req, &recorder{}); w.Code != 200 {
		t.Fatalf("after recovery: %d", w.Code)
	}
}

func TestUsageExceededSaysWhenItRefills(t *testing.T) {
	t.Parallel()
	store := newFakeStore()
	k := store.key
	k.HasRemaining, k.HasRefillAmount, k.RefillAmount, k.RefillInterval = true, true, 10, time.Hour
	k.LastRefillAt = time.Now().Add(-30 * time.Minute)
	h := newHandler(t, &Handler{}, store)
	req, _ := newRequest(http.Header{"X-Api-Key": {testKey}})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req, &recorder{})
	if w.Code != 429 {
		t.Fatalf("status %d", w.Code)
	}
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1790 || ra > 1800 {
		t.Errorf("Retry-After = %q, want about 1800", w.Header().Get("Retry-After"))
	}
}

func TestCredentialRemoval(t *testing.T) {
	t.Parallel()
	cookie := "a=1; better-auth.session_token=" + strings.ReplaceAll(signed(testToken), "=", "%3D") + "; better-auth.session_data.0=x; __Secure-better-auth.session_data=y; b=2"
	for _, tc := range []struct {
		name        string
		keep        bool
		in          http.Header
		gone        string
		wantCookie  string
		keptCookies bool
	}{
		{"x-api-key", false, http.Header{"X-Api-Key": {testKey}}, "X-Api-Key", "", false},
		{"bearer", false, http.Header{"Authorization": {"Bearer " + testKey}}, "Authorization", "", false},
		{"cookie", false, http.Header{"Cookie": {cookie}}, "", "a=1; b=2", false},
		{"only cookie", false, http.Header{"Cookie": {"better-auth.session_token=" + signed(testToken)}}, "Cookie", "", false},
		{"kept", true, http.Header{"X-Api-Key": {testKey}}, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, &Handler{Options: gateway.Options{KeepCredential: tc.keep}}, newFakeStore())
			req, _ := newRequest(tc.in)
			next := &recorder{}
			h.ServeHTTP(httptest.NewRecorder(), req, next)
			if !next.called {
				t.Fatal("denied")
			}
			if tc.gone != "" {
				if _, ok := next.header[tc.gone]; ok {
					t.Errorf("%s forwarded", tc.gone)
				}
			}
			if tc.keep && next.header.Get("X-Api-Key") != testKey {
				t.Error("keep_credential dropped the key")
			}
			if tc.wantCookie != "" && next.header.Get("Cookie") != tc.wantCookie {
				t.Errorf("Cookie = %q, want %q", next.header.Get("Cookie"), tc.wantCookie)
			}
		})
	}
}

func TestUpstreamErrorWithAPIKeyIsAnsweredHere(t *testing.T) {
	t.Parallel()
	h := newHandler(t, &Handler{}, newFakeStore())
	upstreamErr := caddyhttp.Error(http.StatusBadGateway, errors.New("dial tcp: connection refused"))

	// Without handle_errors: the handler answers and Caddy never logs the
	// request copy that holds the key.
	req, _ := newRequest(http.Header{"X-Api-Key": {testKey}})
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.ServerCtxKey, &caddyhttp.Server{}))
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, req, &recorder{err: upstreamErr}); err != nil || w.Code != 502 {
		t.Fatalf("err %v, status %d", err, w.Code)
	}

	// With handle_errors routes the error goes to them.
	srv := &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{}}}}
	req, _ = newRequest(http.Header{"X-Api-Key": {testKey}})
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.ServerCtxKey, srv))
	if err := h.ServeHTTP(httptest.NewRecorder(), req, &recorder{err: upstreamErr}); !errors.Is(err, upstreamErr) {
		t.Fatalf("err = %v, want the upstream error", err)
	}

	// Credentials Caddy redacts itself keep the normal error path.
	req, _ = newRequest(http.Header{"Authorization": {"Bearer " + testKey}})
	if err := h.ServeHTTP(httptest.NewRecorder(), req, &recorder{err: upstreamErr}); !errors.Is(err, upstreamErr) {
		t.Fatalf("bearer: err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, h := range []*Handler{
		{Options: gateway.Options{LookupTimeout: -1}},
		{Options: gateway.Options{APIKeyPrefixes: []string{""}}},
		{Options: gateway.Options{APIKeyHeaders: []string{"X-Auth-Key"}}},
		{Options: gateway.Options{APIKeyHeaders: []string{"authorization"}}},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%+v validated", h)
		}
	}
	if err := (&Handler{Options: gateway.Options{APIKeyHeaders: []string{"api-key"}}}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestProvisionDoesNoIO(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	// Nothing listens on port 1: a provision that connected would fail.
	h := &Handler{Options: gateway.Options{Database: "postgres://nobody@127.0.0.1:1/none", Secret: testSecret}}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	h2 := &Handler{Options: gateway.Options{Database: "postgres://nobody@127.0.0.1:1/none", Secret: "other-" + testSecret}}
	if err := h2.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if h.key != h2.key {
		t.Error("handlers with one database do not share a backend")
	}
	for _, m := range []*Handler{h, h2} {
		if err := m.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&Handler{}).Provision(ctx); err == nil || !strings.Contains(err.Error(), "database is required") {
		t.Fatalf("empty database: %v", err)
	}
	err := (&Handler{Options: gateway.Options{Database: "postgres://u:hunter2@[::1"}}).Provision(ctx)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL error %v must exist and not quote the URL", err)
	}
}

// The shared Redis is not trusted: its entries are sealed, and a gateway
// with nothing to seal them with refuses to load.
func TestRedisNeedsAKeySource(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	const db = "postgres://nobody@127.0.0.1:1/none"
	redis := func(key string) *gateway.Redis { return &gateway.Redis{URL: "redis://127.0.0.1:1", Key: key} }
	for _, tc := range []struct {
		name string
		h    *Handler
		want string
	}{
		{"no secret, no key", &Handler{Options: gateway.Options{Database: db, Redis: redis("")}}, "no key to do it with"},
		{"a short key", &Handler{Options: gateway.Options{Database: db, Redis: redis("short")}}, "at least 32 characters"},
		{"an unset variable", &Handler{Options: gateway.Options{Database: db, Redis: redis("{env.CADDY_BETTERAUTH_UNSET_KEY}")}}, "at least 32 characters"},
	} {
		if err := tc.h.Provision(ctx); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	// Either source works, and different keys never share a backend.
	a := &Handler{Options: gateway.Options{Database: db, Secret: testSecret, Redis: redis("")}}
	b := &Handler{Options: gateway.Options{Database: db, Redis: redis(strings.Repeat("k", 32))}}
	c := &Handler{Options: gateway.Options{Database: db, Secret: "other-" + testSecret, Redis: redis("")}}
	d := &Handler{Options: gateway.Options{Database: db, Secret: "other-" + testSecret, Redis: redis(strings.Repeat("k", 32))}}
	for _, h := range []*Handler{a, b, c, d} {
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		defer h.Cleanup()
	}
	if a.key == b.key || a.key == c.key || b.key == d.key {
		t.Error("gateways sealing with different keys share a backend (one cache key, different secrets: d and b)")
	}
}

func TestClientThatLeftGetsNoAnswer(t *testing.T) {
	t.Parallel()
	inner := newFakeStore()
	inner.err = context.Canceled
	h := newHandler(t, &Handler{}, inner)
	req, _ := newRequest(http.Header{"X-Api-Key": {testKey}})
	ctx, cancel := context.WithCancel(req.Context())
	cancel()
	w := httptest.NewRecorder()
	next := &recorder{}
	if err := h.ServeHTTP(w, req.WithContext(ctx), next); err != nil || next.called || w.Body.Len() != 0 {
		t.Fatalf("err %v, next %v, body %q", err, next.called, w.Body)
	}
}

// blockingNext holds the request until its context ends, and reports why.
type blockingNext struct{ cause chan error }

func (b blockingNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusOK)
	<-r.Context().Done()
	b.cause <- context.Cause(r.Context())
	return r.Context().Err()
}

func TestStreamsEndWithTheirCredential(t *testing.T) {
	t.Parallel()
	store := newFakeStore()
	h := newHandler(t, &Handler{}, store)
	h.streams = gateway.NewStreams()
	serve := func(hdr http.Header) (chan error, chan error) {
		req, _ := newRequest(hdr)
		next := blockingNext{cause: make(chan error, 1)}
		ret := make(chan error, 1)
		go func() { ret <- h.ServeHTTP(httptest.NewRecorder(), req, next) }()
		return next.cause, ret
	}
	waitStreams := func(n int) {
		t.Helper()
		for i := 0; ; i++ {
			got := h.streams.Len()
			if got == n {
				return
			}
			if i > 1e6 {
				t.Fatalf("%d streams watched, want %d", got, n)
			}
			runtime.Gosched()
		}
	}

	cause, ret := serve(http.Header{"X-Api-Key": {testKey}, "Accept": {"application/json, text/event-stream"}})
	waitStreams(1)
	store.key.Enabled = false // what the database now says
	h.streams.Revoked(cache.TargetAPIKey, "k1")
	if c := <-cause; !errors.Is(c, gateway.ErrRevoked) {
		t.Fatalf("cause %v", c)
	}
	if err := <-ret; err != nil {
		t.Fatalf("a cut stream must end quietly, got %v", err)
	}
	waitStreams(0)

	store.key.Enabled, store.key.ExpiresAt = true, time.Now().Add(50*time.Millisecond)
	cause, _ = serve(http.Header{"X-Api-Key": {testKey}, "Accept": {"text/event-stream"}})
	if c := <-cause; !errors.Is(c, gateway.ErrExpired) {
		t.Fatalf("cause %v", c)
	}
}
