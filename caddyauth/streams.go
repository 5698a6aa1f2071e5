package caddyauth

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
)

// Why a long-lived response was cut.
var (
	errRevoked = errors.New("better_auth: the credential was revoked")
	errExpired = errors.New("better_auth: the credential expired")
)

// streams tracks the allowed requests in flight of a backend, so that a
// revocation can end them: a client must not keep a stream (server-sent
// events, a WebSocket, an extended CONNECT) that its key, session or user no
// longer allows. Every allowed request is tracked, because whether a
// response streams is the upstream's choice: MCP servers stream for
// "Accept: */*" and for any letter case, and WebSockets over HTTP/2 and
// HTTP/3 carry no Upgrade header.
type streams struct {
	mu  sync.Mutex
	set map[*stream]struct{}
}

type stream struct {
	keyID, sessionID, userID string
	h                        *Handler
	cred                     betterauth.Credential
	set                      *streams
	cancel                   context.CancelCauseFunc
	stopDeadline             context.CancelFunc // nil without an expiry
}

// recheck verifies the stream's credential again, from the database (the
// revocation has already dropped it from the cache).
func (st *stream) recheck(ctx context.Context) bool {
	d, err := st.h.verifier.Verify(ctx, st.cred)
	return err == nil && d.Allowed()
}

// release forgets the stream once its request is over.
func (st *stream) release() {
	st.set.mu.Lock()
	delete(st.set.set, st)
	st.set.mu.Unlock()
	if st.stopDeadline != nil {
		st.stopDeadline()
	}
	st.cancel(nil)
}

func newStreams() *streams { return &streams{set: map[*stream]struct{}{}} }

func (s *streams) add(st *stream) {
	st.set = s
	s.mu.Lock()
	s.set[st] = struct{}{}
	s.mu.Unlock()
}

// revoked rechecks the streams a revocation may concern and ends those
// whose credential no longer passes. A change to a row is not always a
// revocation (Better-Auth updates keys as it counts their use), hence the
// recheck; a recheck that cannot reach the database ends the stream too.
func (s *streams) revoked(target cache.Target, id string) {
	s.mu.Lock()
	var hit []*stream
	for st := range s.set {
		if (target == cache.TargetAPIKey && st.keyID == id) || (target == cache.TargetSession && st.sessionID == id) ||
			(target == cache.TargetUser && st.userID == id) {
			hit = append(hit, st)
		}
	}
	s.mu.Unlock()
	for _, st := range hit {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if !st.recheck(ctx) {
				st.cancel(errRevoked)
			}
		}()
	}
}

// watch ties r to the credential's life: its context ends when the
// credential expires or is revoked. Release the stream when the request is
// over.
func (h *Handler) watch(r *http.Request, cred betterauth.Credential, d betterauth.Decision) (*http.Request, *stream) {
	ctx, cancel := context.WithCancelCause(r.Context())
	st := &stream{userID: d.User.ID, h: h, cred: cred, cancel: cancel}
	if !d.ExpiresAt.IsZero() {
		ctx, st.stopDeadline = context.WithDeadlineCause(ctx, d.ExpiresAt, errExpired)
	}
	if d.Method == betterauth.MethodAPIKey {
		st.keyID = d.CredentialID
	} else {
		st.sessionID = d.CredentialID
	}
	h.streams.add(st)
	return r.WithContext(ctx), st
}

// streamCut reports why a request's context was ended by the gateway, if it
// was.
func streamCut(r *http.Request) error {
	if c := context.Cause(r.Context()); errors.Is(c, errRevoked) || errors.Is(c, errExpired) {
		return c
	}
	return nil
}
