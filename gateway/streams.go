package gateway

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// Why a request in flight was ended.
var (
	ErrRevoked = errors.New("better_auth: the credential was revoked")
	ErrExpired = errors.New("better_auth: the credential expired")
)

// Streams tracks the allowed requests in flight of a gateway, so that a
// revocation can end them: a client must not keep a stream (server-sent
// events, a WebSocket, an extended CONNECT) that its key, session or user no
// longer allows. A front end that proxies (the Caddy handler) watches every
// allowed request, because whether a response streams is the upstream's
// choice: MCP servers stream for "Accept: */*" and for any letter case, and
// WebSockets over HTTP/2 and HTTP/3 carry no Upgrade header.
type Streams struct {
	mu      sync.Mutex
	set     map[*Stream]struct{}
	metrics *metrics.Set // nil: not counted
}

// Stream is one watched request.
type Stream struct {
	keyID, sessionID, userID, orgID string
	tokenID, clientID               string // an OAuth token's
	gate                            *betterauth.Gate
	cred                            betterauth.Credential
	client                          netip.Addr // for the key's own allow-list
	set                             *Streams
	cancel                          context.CancelCauseFunc
	stopDeadline                    context.CancelFunc // nil without an expiry
	ctx                             context.Context    // what Watch returned, for why it ended
}

// NewStreams returns an empty registry (a Gateway has its own).
func NewStreams() *Streams { return &Streams{set: map[*Stream]struct{}{}} }

// NewCountedStreams returns an empty registry that counts its streams in
// m.
func NewCountedStreams(m *metrics.Set) *Streams {
	s := NewStreams()
	s.metrics = m
	return s
}

// Watch ties ctx to the life of an allowed request's credential: the
// returned context ends, with cause ErrExpired or ErrRevoked, when the
// credential expires, or when it is revoked and no longer passes the gate.
// Release the stream when the request is over.
func (s *Streams) Watch(ctx context.Context, gate *betterauth.Gate, res *betterauth.Result) (context.Context, *Stream) {
	ctx, cancel := context.WithCancelCause(ctx)
	d := res.Decision
	st := &Stream{gate: gate, cred: res.Credential, client: res.Client, cancel: cancel, set: s}
	switch {
	case d.User != nil:
		st.userID = d.User.ID
		if d.Member != nil {
			st.orgID = d.Member.OrgID
		}
	case d.Org != nil:
		st.orgID = d.Org.ID
	}
	if !d.ExpiresAt.IsZero() {
		ctx, st.stopDeadline = context.WithDeadlineCause(ctx, d.ExpiresAt, ErrExpired)
	}
	switch d.Method {
	case betterauth.MethodAPIKey:
		st.keyID = d.CredentialID
	case betterauth.MethodSession:
		st.sessionID = d.CredentialID
	case betterauth.MethodOAuth:
		st.tokenID, st.clientID, st.sessionID = d.CredentialID, d.Client, d.TokenSession
	}
	st.ctx = ctx
	s.mu.Lock()
	s.set[st] = struct{}{}
	s.mu.Unlock()
	s.metrics.StreamOpened()
	return ctx, st
}

// Cut reports why the gateway ended a request's context, if it did.
func Cut(ctx context.Context) error {
	if c := context.Cause(ctx); errors.Is(c, ErrRevoked) || errors.Is(c, ErrExpired) {
		return c
	}
	return nil
}

// Release forgets the stream once its request is over.
func (st *Stream) Release() {
	st.set.mu.Lock()
	_, watched := st.set.set[st]
	delete(st.set.set, st)
	st.set.mu.Unlock()
	if watched && st.set.metrics != nil {
		why := metrics.EndedDone
		switch context.Cause(st.ctx) {
		case ErrRevoked:
			why = metrics.EndedRevoked
		case ErrExpired:
			why = metrics.EndedExpired
		}
		st.set.metrics.StreamEnded(why)
	}
	if st.stopDeadline != nil {
		st.stopDeadline()
	}
	st.cancel(nil)
}

// Revoked rechecks the streams a revocation of a key, session, user,
// organization, OAuth token or client (by id) may concern, and ends those whose credential no longer passes. A change to a row is not always a
// revocation (Better-Auth updates keys as it counts their use), hence the
// recheck, from the database (the revocation has already dropped the
// credential from the cache); a recheck that cannot reach the database
// ends the stream too.
func (s *Streams) Revoked(target cache.Target, id string) {
	s.mu.Lock()
	var hit []*Stream
	for st := range s.set {
		if (target == cache.TargetAPIKey && st.keyID == id) || (target == cache.TargetSession && st.sessionID == id) ||
			(target == cache.TargetUser && st.userID == id) || (target == cache.TargetOrg && st.orgID == id) ||
			(target == cache.TargetOAuthToken && st.tokenID == id) || (target == cache.TargetOAuthClient && st.clientID == id) ||
			(target == cache.TargetOAuth && st.tokenID != "") {
			hit = append(hit, st)
		}
	}
	s.mu.Unlock()
	for _, st := range hit {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if !st.gate.Recheck(ctx, st.cred, st.client) {
				st.cancel(ErrRevoked)
			}
		}()
	}
}

// Len is how many requests are watched.
func (s *Streams) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.set)
}
