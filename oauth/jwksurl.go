package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// JWKSURLConfig configures a JWKSURL.
type JWKSURLConfig struct {
	// URL is the JWKS document: Better-Auth's <baseURL><basePath>/jwks
	// (jwks.jwksPath, jwks.remoteUrl), e.g.
	// http://localhost:3000/api/auth/jwks. It must be https, or http on
	// a loopback host unless AllowHTTP.
	URL string
	// AllowHTTP allows an http URL on any host. Unsafe: whoever can
	// tamper with the traffic can then substitute keys and sign tokens.
	AllowHTTP bool
	// Client fetches the document. Default: http.DefaultClient.
	Client *http.Client
	// Timeout bounds one fetch. Default: 10 s.
	Timeout time.Duration
	// RefetchInterval is the least time between two fetches: a token
	// whose kid is not in the cached set causes a fetch only when the
	// last one is at least this old, so that a flood of unknown kids
	// cannot hammer the issuer. Default: 30 s.
	RefetchInterval time.Duration
	// MaxAge is how long a fetched set is used before it is fetched again
	// in the background (while the cached keys keep verifying), so that
	// keys Better-Auth stops publishing stop verifying. Default: 5 min.
	MaxAge time.Duration
	// MaxBytes bounds the document's size. Default: 1 MiB.
	MaxBytes int64
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
}

// JWKSURL is a KeySource that fetches a JWKS document over HTTP and keeps
// its keys in memory. A token with a kid the cached set lacks causes one
// fetch, at most once per RefetchInterval, shared by all who wait for it.
// When a fetch fails, the keys already fetched keep verifying; a kid they
// lack is then a backend error until a fetch succeeds, as it cannot be
// told whether it exists.
type JWKSURL struct {
	cfg    JWKSURLConfig
	state  atomic.Pointer[jwksState] // nil before the first fetch
	flight singleflight.Group
	// refreshing: a background fetch of a stale set is under way.
	refreshing atomic.Bool
}

// jwksState is one immutable outcome of fetching: replaced, never changed.
type jwksState struct {
	keys      map[string]Key
	fetched   time.Time // the last successful fetch; zero if none
	attempted time.Time // the last fetch, successful or not
	err       error     // the last fetch's failure, nil if it succeeded
}

// NewJWKSURL checks cfg and returns its key source. It does no network
// I/O: the first token to verify fetches the document (or Refresh does).
func NewJWKSURL(cfg JWKSURLConfig) (*JWKSURL, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		return nil, fmt.Errorf("oauth: JWKS URL %q must be an absolute URL", cfg.URL)
	}
	if err := cfg.checkScheme(u); err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 || cfg.RefetchInterval < 0 || cfg.MaxAge < 0 || cfg.MaxBytes < 0 {
		return nil, errors.New("oauth: JWKS URL: negative timeout, interval, age or size")
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	// A redirect is held to the same rule: an https URL that redirects to
	// plain http would hand the keys to whoever is on that path.
	client := *cfg.Client
	next := client.CheckRedirect
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := cfg.checkScheme(req.URL); err != nil {
			return err
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	cfg.Client = &client
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.RefetchInterval == 0 {
		cfg.RefetchInterval = 30 * time.Second
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 5 * time.Minute
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &JWKSURL{cfg: cfg}, nil
}

// Key implements KeySource.
func (s *JWKSURL) Key(ctx context.Context, kid string) (Key, error) {
	now := s.cfg.Now()
	st := s.state.Load()
	if st != nil {
		if k, ok := st.keys[kid]; ok {
			if now.Sub(st.fetched) >= s.cfg.MaxAge && now.Sub(st.attempted) >= s.cfg.RefetchInterval &&
				s.refreshing.CompareAndSwap(false, true) {
				// Stale: fetch again, without making this request wait.
				go func() {
					defer s.refreshing.Store(false)
					_, _ = s.fetch(context.WithoutCancel(ctx)) // the outcome is in s.state
				}()
			}
			return k, nil
		}
		if now.Sub(st.attempted) < s.cfg.RefetchInterval {
			return Key{}, st.missing()
		}
	}
	st, err := s.fetch(ctx)
	if err != nil {
		return Key{}, err
	}
	if k, ok := st.keys[kid]; ok {
		return k, nil
	}
	return Key{}, st.missing()
}

// missing is the answer for a kid the set lacks: not found when the last
// fetch succeeded, its failure otherwise.
func (st *jwksState) missing() error {
	if st.err != nil {
		return fmt.Errorf("oauth: fetching the JWKS: %w", st.err)
	}
	return ErrKeyNotFound
}

// Refresh fetches the document now, unless a fetch happened within
// RefetchInterval: to load the keys at startup, or to check the issuer.
func (s *JWKSURL) Refresh(ctx context.Context) error {
	st, err := s.fetch(ctx)
	if err != nil {
		return err
	}
	if st.err != nil {
		return fmt.Errorf("oauth: fetching the JWKS: %w", st.err)
	}
	return nil
}

// fetch fetches the document, once for all concurrent callers, and
// returns the state it leaves. The fetch runs on its own deadline,
// detached from ctx, so that one caller giving up does not fail the
// others; ctx ends only this caller's wait. A fetch that fails leaves the
// keys as they were, with the failure recorded.
func (s *JWKSURL) fetch(ctx context.Context) (*jwksState, error) {
	ch := s.flight.DoChan("", func() (any, error) {
		old := s.state.Load()
		now := s.cfg.Now()
		// A fetch may have ended just before this one was asked for.
		if old != nil && now.Sub(old.attempted) < s.cfg.RefetchInterval {
			return old, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
		defer cancel()
		keys, err := s.get(fctx)
		next := &jwksState{keys: keys, fetched: now, attempted: now}
		if err != nil {
			next.err, next.keys, next.fetched = err, nil, time.Time{}
			if old != nil {
				next.keys, next.fetched = old.keys, old.fetched
			}
		}
		s.state.Store(next)
		return next, nil
	})
	select {
	case r := <-ch:
		return r.Val.(*jwksState), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// get fetches and parses the document.
func (s *JWKSURL) get(ctx context.Context) (map[string]Key, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", s.cfg.URL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > s.cfg.MaxBytes {
		return nil, fmt.Errorf("%s sent more than %d bytes", s.cfg.URL, s.cfg.MaxBytes)
	}
	list, err := ParseJWKS(body)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]Key, len(list))
	for _, k := range list {
		keys[k.ID] = k
	}
	return keys, nil
}

// checkScheme refuses a URL the keys may not come from: https, or http on
// a loopback host (or anywhere with AllowHTTP).
func (cfg JWKSURLConfig) checkScheme(u *url.URL) error {
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (cfg.AllowHTTP || isLoopback(u.Hostname())):
	default:
		return fmt.Errorf("oauth: JWKS URL %q must be https (http only on a loopback host, or with AllowHTTP)", u.Redacted())
	}
	return nil
}
