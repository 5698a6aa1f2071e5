package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

// issuer serves a JWKS document and counts the fetches.
type issuer struct {
	mu      sync.Mutex
	keys    []oauth.Key
	status  int
	body    string        // served instead of the keys when set
	delay   time.Duration // before answering
	fetches atomic.Int64
	srv     *httptest.Server
}

func newIssuer(t *testing.T, keys ...oauth.Key) *issuer {
	is := &issuer{keys: keys, status: http.StatusOK}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		status, body, delay := is.status, is.body, is.delay
		list := []any{}
		for _, k := range is.keys {
			j := publicJWK(t, k)
			j["kid"], j["alg"] = k.ID, k.Alg
			list = append(list, j)
		}
		is.mu.Unlock()
		time.Sleep(delay)
		if body == "" {
			body = string(marshal(t, map[string]any{"keys": list}))
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) set(f func(*issuer)) {
	is.mu.Lock()
	defer is.mu.Unlock()
	f(is)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newJWKSURL(t *testing.T, is *issuer, c *clock, cfg oauth.JWKSURLConfig) *oauth.JWKSURL {
	t.Helper()
	cfg.URL = is.srv.URL + "/api/auth/jwks"
	cfg.Now = c.Now
	s, err := oauth.NewJWKSURL(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWKSURLFetchesOnFirstUseAndCaches(t *testing.T) {
	ed, es := signerFor(t, oauth.EdDSA).key, signerFor(t, oauth.ES256).key
	is := newIssuer(t, ed, es)
	c := &clock{t: testNow}
	s := newJWKSURL(t, is, c, oauth.JWKSURLConfig{})
	if n := is.fetches.Load(); n != 0 {
		t.Fatalf("the constructor fetched %d times", n)
	}
	ctx := context.Background()
	for range 10 {
		for _, want := range []oauth.Key{ed, es} {
			k, err := s.Key(ctx, want.ID)
			if err != nil || k.ID != want.ID || k.Alg != want.Alg {
				t.Fatalf("Key(%s) = %+v, %v", want.ID, k, err)
			}
		}
	}
	if n := is.fetches.Load(); n != 1 {
		t.Errorf("%d fetches", n)
	}
}

func TestJWKSURLRefetchesForUnknownKidsAtMostOncePerInterval(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	is := newIssuer(t, ed)
	c := &clock{t: testNow}
	s := newJWKSURL(t, is, c, oauth.JWKSURLConfig{RefetchInterval: 30 * time.Second})
	ctx := context.Background()
	if _, err := s.Key(ctx, ed.ID); err != nil {
		t.Fatal(err)
	}
	// A flood of unknown kids, some concurrent: no fetch within the interval.
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if _, err := s.Key(ctx, "unknown-"+string(rune('a'+i%26))); !errors.Is(err, oauth.ErrKeyNotFound) {
				t.Errorf("unknown kid: %v", err)
			}
		})
	}
	wg.Wait()
	if n := is.fetches.Load(); n != 1 {
		t.Errorf("%d fetches within the interval", n)
	}

	// A new key (rotation) is found by the first fetch after the interval.
	rotated := newSigner(t, oauth.EdDSA, "rotated").key
	is.set(func(is *issuer) { is.keys = append(is.keys, rotated) })
	if _, err := s.Key(ctx, rotated.ID); !errors.Is(err, oauth.ErrKeyNotFound) {
		t.Errorf("within the interval: %v", err)
	}
	c.Add(30 * time.Second)
	for range 50 {
		wg.Go(func() {
			if k, err := s.Key(ctx, rotated.ID); err != nil || k.ID != rotated.ID {
				t.Errorf("rotated key: %+v, %v", k, err)
			}
		})
	}
	wg.Wait()
	if n := is.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestJWKSURLConcurrentFirstFetchIsShared(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	is := newIssuer(t, ed)
	is.delay = 50 * time.Millisecond
	s := newJWKSURL(t, is, &clock{t: testNow}, oauth.JWKSURLConfig{})
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := s.Key(context.Background(), ed.ID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := is.fetches.Load(); n != 1 {
		t.Errorf("%d fetches", n)
	}
}

func TestJWKSURLFailures(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	is := newIssuer(t, ed)
	c := &clock{t: testNow}
	s := newJWKSURL(t, is, c, oauth.JWKSURLConfig{MaxAge: time.Minute})
	ctx := context.Background()

	// Nothing fetched yet, and the issuer fails: a backend error, not "no such key".
	is.set(func(is *issuer) { is.status = http.StatusInternalServerError })
	if _, err := s.Key(ctx, ed.ID); err == nil || notFoundOrUnusable(err) {
		t.Fatalf("first fetch failing: %v", err)
	}
	if err := s.Refresh(ctx); err == nil {
		t.Error("Refresh within the interval after a failure succeeded")
	}

	// It recovers after the interval.
	is.set(func(is *issuer) { is.status = http.StatusOK })
	c.Add(30 * time.Second)
	if _, err := s.Key(ctx, ed.ID); err != nil {
		t.Fatal(err)
	}

	// It fails again: the fetched keys keep verifying, an unknown kid is
	// a backend error (it may be a new key the issuer could not tell of).
	is.set(func(is *issuer) { is.status = http.StatusBadGateway })
	c.Add(time.Minute)
	if _, err := s.Key(ctx, "new"); err == nil || notFoundOrUnusable(err) {
		t.Errorf("unknown kid while the issuer fails: %v", err)
	}
	for range 5 {
		if _, err := s.Key(ctx, ed.ID); err != nil {
			t.Errorf("cached key while the issuer fails: %v", err)
		}
	}
	c.Add(time.Minute)
	if _, err := s.Key(ctx, ed.ID); err != nil {
		t.Errorf("cached key while the issuer fails: %v", err)
	}
}

func notFoundOrUnusable(err error) bool {
	return errors.Is(err, oauth.ErrKeyNotFound) || errors.Is(err, oauth.ErrUnusableKey)
}

func TestJWKSURLDropsKeysTheIssuerNoLongerPublishes(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	is := newIssuer(t, ed)
	c := &clock{t: testNow}
	s := newJWKSURL(t, is, c, oauth.JWKSURLConfig{MaxAge: 5 * time.Minute})
	ctx := context.Background()
	if _, err := s.Key(ctx, ed.ID); err != nil {
		t.Fatal(err)
	}
	is.set(func(is *issuer) { is.keys = nil })
	c.Add(5 * time.Minute)
	// The stale set still answers, and is fetched again in the background.
	if _, err := s.Key(ctx, ed.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Key(ctx, ed.ID)
		if errors.Is(err, oauth.ErrKeyNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed key still verifies: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := is.fetches.Load(); n != 2 {
		t.Errorf("%d fetches", n)
	}
}

func TestJWKSURLRefusesBadDocuments(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	for name, body := range map[string]string{
		"oversized":  `{"keys":[],"pad":"` + strings.Repeat("x", 2<<10) + `"}`,
		"not a JWKS": `<html>`,
		"no keys":    `{}`,
	} {
		t.Run(name, func(t *testing.T) {
			is := newIssuer(t, ed)
			is.body = body
			s := newJWKSURL(t, is, &clock{t: testNow}, oauth.JWKSURLConfig{MaxBytes: 1 << 10})
			if _, err := s.Key(context.Background(), ed.ID); err == nil || notFoundOrUnusable(err) {
				t.Errorf("Key: %v", err)
			}
		})
	}
}

func TestJWKSURLWaitEndsWithTheContext(t *testing.T) {
	ed := signerFor(t, oauth.EdDSA).key
	is := newIssuer(t, ed)
	is.delay = 200 * time.Millisecond
	s := newJWKSURL(t, is, &clock{t: testNow}, oauth.JWKSURLConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Key(ctx, ed.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Key: %v", err)
	}
	// The fetch went on without the caller, for the others.
	time.Sleep(300 * time.Millisecond)
	if _, err := s.Key(context.Background(), ed.ID); err != nil {
		t.Errorf("after the fetch: %v", err)
	}
	if n := is.fetches.Load(); n != 1 {
		t.Errorf("%d fetches", n)
	}
}

func TestNewJWKSURLChecksItsConfig(t *testing.T) {
	for _, cfg := range []oauth.JWKSURLConfig{
		{URL: ""},
		{URL: "/api/auth/jwks"},
		{URL: "http://auth.example.com/api/auth/jwks"},
		{URL: "ftp://auth.example.com/jwks"},
		{URL: "https://auth.example.com/jwks", Timeout: -1},
	} {
		if _, err := oauth.NewJWKSURL(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	for _, cfg := range []oauth.JWKSURLConfig{
		{URL: "https://auth.example.com/api/auth/jwks"},
		{URL: "http://localhost:3000/api/auth/jwks"},
		{URL: "http://127.0.0.1:3000/api/auth/jwks"},
		{URL: "http://auth:3000/api/auth/jwks", AllowHTTP: true},
	} {
		if _, err := oauth.NewJWKSURL(cfg); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
