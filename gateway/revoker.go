package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// maxPendingRevocations bounds the revocations waiting to be applied; past
// it they are replaced by one purge, which covers them all.
const maxPendingRevocations = 10_000

// revoker coalesces revocations. The watchers add what they hear and one
// goroutine applies it in batches, each target once. Any database role can
// NOTIFY the channel and anyone who can write to the app's Redis can cause
// keyspace events, so a flood must cost one cache scan per batch, not one
// per notification.
type revoker struct {
	mu      sync.Mutex
	pending map[cache.Revocation]bool // true: relay to the other gateways
	wake    chan struct{}
	apply   func(ctx context.Context, revs, relay []cache.Revocation)
	logger  *zap.Logger
}

func newRevoker(apply func(ctx context.Context, revs, relay []cache.Revocation), logger *zap.Logger) *revoker {
	return &revoker{pending: map[cache.Revocation]bool{}, wake: make(chan struct{}, 1), apply: apply, logger: logger}
}

// add queues a revocation; relay says whether the other gateways should
// hear of it.
func (r *revoker) add(rev cache.Revocation, relay bool) {
	r.mu.Lock()
	if _, ok := r.pending[rev]; !ok && len(r.pending) >= maxPendingRevocations {
		anyRelay := relay
		for _, v := range r.pending {
			anyRelay = anyRelay || v
		}
		clear(r.pending)
		rev, relay = cache.Revocation{Target: cache.TargetAll}, anyRelay
		r.logger.Warn("too many revocations at once; purging the cache instead", zap.Int("pending", maxPendingRevocations))
	}
	r.pending[rev] = r.pending[rev] || relay
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run applies batches until ctx ends.
func (r *revoker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		r.mu.Lock()
		batch := r.pending
		r.pending = make(map[cache.Revocation]bool, len(batch))
		r.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		revs := make([]cache.Revocation, 0, len(batch))
		var relay []cache.Revocation
		for rev, rl := range batch {
			revs = append(revs, rev)
			if rl {
				relay = append(relay, rev)
			}
		}
		r.apply(ctx, revs, relay)
	}
}

// busMessage is a batch of invalidations a gateway heard and applied,
// relayed to the other gateways on the shared Redis with the shared epoch
// it reached (0 if it could not advance it). It names keys, sessions and
// users by id and credentials by digest: never a secret. It travels sealed
// (see cache.Sealer): Redis is not trusted.
type busMessage struct {
	From  string    `json:"from"`
	Epoch uint64    `json:"ep,omitempty"`
	At    int64     `json:"at"` // when the sender revoked, unix milliseconds
	Revs  []wireRev `json:"r"`
}

type wireRev struct {
	Target cache.Target `json:"t"`
	ID     string       `json:"id,omitempty"`
	Digest []byte       `json:"d,omitempty"`
}

func wireRevs(revs []cache.Revocation) []wireRev {
	out := make([]wireRev, len(revs))
	for i, r := range revs {
		out[i] = wireRev{Target: r.Target, ID: r.ID}
		if r.Target == cache.TargetCredential {
			out[i].Digest = r.Digest[:]
		}
	}
	return out
}

func (m busMessage) revocations() []cache.Revocation {
	out := make([]cache.Revocation, 0, len(m.Revs))
	for _, w := range m.Revs {
		r := cache.Revocation{Target: w.Target, ID: w.ID}
		switch {
		case w.Target == cache.TargetCredential && len(w.Digest) == 32:
			r.Digest = [32]byte(w.Digest)
		case (w.Target == cache.TargetAPIKey || w.Target == cache.TargetSession || w.Target == cache.TargetUser ||
			w.Target == cache.TargetOrg || w.Target == cache.TargetOAuthToken || w.Target == cache.TargetOAuthClient) && w.ID != "":
		case w.Target == cache.TargetAll || w.Target == cache.TargetOAuth:
		default:
			continue
		}
		out = append(out, r)
	}
	return out
}

// replays remembers the relayed messages applied within cache.MessageWindow,
// so that one captured and published again is applied once. Only the relay
// goroutine uses it.
type replays struct {
	seen map[[32]byte]time.Time
}

// maxRemembered bounds the messages remembered; past it (more genuine
// messages in one window than any deployment sends) replays cost database
// reads again, never access.
const maxRemembered = 100_000

// first reports whether a message is new, and remembers it.
func (r *replays) first(payload []byte, at time.Time) bool {
	sum := sha256.Sum256(payload)
	if _, ok := r.seen[sum]; ok {
		return false
	}
	if r.seen == nil {
		r.seen = map[[32]byte]time.Time{}
	}
	if len(r.seen) >= 1024 {
		for k, t := range r.seen {
			if time.Since(t) > cache.MessageWindow {
				delete(r.seen, k)
			}
		}
	}
	if len(r.seen) < maxRemembered {
		r.seen[sum] = at
	}
	return true
}

// maxBusMessage bounds a relayed message, in bytes.
const maxBusMessage = 4 << 20

// channel is where this gateway and its replicas relay invalidations: under the
// shared cache's prefix, which the database names on first use.
func (g *Gateway) channel(ctx context.Context) (string, error) {
	p, err := g.cache.Prefix(ctx)
	if err != nil {
		return "", err
	}
	return p + "v2:invalidations", nil
}

// publish relays a batch to the other gateways.
func (g *Gateway) publish(ctx context.Context, m busMessage) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	channel, err := g.channel(ctx)
	if err == nil {
		var raw []byte
		if raw, err = json.Marshal(m); err == nil {
			err = g.bus.Publish(ctx, channel, g.sealer.Seal(channel, raw))
		}
	}
	if err != nil {
		g.logger.Warn("could not relay invalidations to the other gateways", zap.Error(err))
	}
}

// relay listens to the other gateways until ctx ends. Every (re)subscription
// purges the cache: what was relayed while no one listened is lost.
func (g *Gateway) relay(ctx context.Context, logger *zap.Logger) {
	for ctx.Err() == nil {
		channel, err := g.channel(ctx)
		if err == nil {
			err = g.bus.Subscribe(ctx, channel, func() {
				g.cache.Purge(ctx)
				logger.Info("listening for invalidations from other gateways", zap.String("channel", channel))
			}, func(raw []byte) { g.receive(ctx, channel, raw) })
		}
		if err != nil && ctx.Err() == nil {
			logger.Warn("cannot hear other gateways; retrying", zap.Error(err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// receive applies another gateway's invalidations, if they are genuine.
func (g *Gateway) receive(ctx context.Context, channel string, raw []byte) {
	var payload []byte
	ok := len(raw) <= maxBusMessage // checked before any work
	if ok {
		payload, ok = g.sealer.Open(channel, raw)
	}
	if !ok {
		if n, ok := g.rejected.Allow(); ok {
			g.logger.Warn("dropped invalidation messages that failed authentication: "+
				"is something else publishing on this channel, or do the gateways' secrets differ?", zap.Uint64("total", n))
		}
		return
	}
	var m busMessage
	if json.Unmarshal(payload, &m) != nil || m.From == g.instance {
		return
	}
	// A sealed message can still be replayed by whoever can subscribe: only
	// recent ones are applied.
	at := time.UnixMilli(m.At)
	age := time.Since(at)
	if age > cache.MessageWindow || age < -cache.MessageWindow {
		if n, ok := g.stale.Allow(); ok {
			g.logger.Warn("dropped relayed invalidations sent too long ago (replayed, or the gateways' clocks disagree)", zap.Uint64("total", n))
		}
		return
	}
	if age > cache.ClockSkew || age < -cache.ClockSkew {
		if n, ok := g.skewed.Allow(); ok {
			g.logger.Warn("a relayed invalidation is stamped more than a second from this gateway's clock: "+
				"the shared cache needs the gateways' clocks within a second of each other", zap.Duration("age", age), zap.Uint64("total", n))
		}
	}
	if !g.relayed.first(payload, at) {
		return // a replay of a message already applied
	}
	revs := m.revocations()
	g.metrics.Revoked(metrics.SourceRelay, len(revs), age)
	g.cache.Relayed(ctx, m.Epoch, at, revs...)
	g.endStreams(revs)
}
