package secondary

import (
	"context"
	"crypto/sha256"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// WatchOptions configure Watch.
type WatchOptions struct {
	Prefix    string
	PlainKeys bool
	// Forget is called with the digest (SHA-256 of the key or token) of a
	// credential whose storage entry changed or went away.
	Forget func(digest [32]byte)
	// ForgetUser is called when all of a user's sessions were revoked.
	ForgetUser func(userID string)
	// Ready, if set, is called each time Redis confirms the subscription:
	// the first time, and after every reconnection, when events sent
	// meanwhile were lost (forget everything then).
	Ready  func()
	Logger *zap.Logger
}

// Watch follows Redis keyspace notifications for the storage's keys until
// ctx ends, so that a session or key that Better-Auth deletes, changes or
// lets expire leaves the gateway's cache at once. Redis sends them only
// when notify-keyspace-events includes K, g, $ and x (for example
// "Kg$x"); without them the cache TTL stays the bound. go-redis resubscribes
// by itself after a connection loss, and Ready hears of it.
func Watch(ctx context.Context, client redis.UniversalClient, opts WatchOptions) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	pattern := "__keyspace@*__:" + globEscape(opts.Prefix) + "*"
	ps := client.PSubscribe(ctx, pattern)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		opts.Logger.Warn("cannot watch secondary storage; entries leave the cache with their TTL", zap.Error(err))
	} else if opts.Ready != nil {
		opts.Ready()
	}
	ch := ps.ChannelWithSubscriptions()
	opts.Logger.Info("watching secondary storage for revocations", zap.String("pattern", pattern))
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			msg, isMsg := m.(*redis.Message)
			if !isMsg {
				if sub, ok := m.(*redis.Subscription); ok && sub.Kind == "psubscribe" && opts.Ready != nil {
					opts.Ready()
					opts.Logger.Info("watching secondary storage again; forgot what may have changed meanwhile")
				}
				continue
			}
			_, key, found := strings.Cut(msg.Channel, "__:")
			if !found {
				continue
			}
			key, found = strings.CutPrefix(key, opts.Prefix)
			if !found {
				continue
			}
			handle(key, opts)
		}
	}
}

func handle(key string, opts WatchOptions) {
	switch {
	case strings.HasPrefix(key, "api-key:by-"), strings.HasPrefix(key, "active-sessions-"):
		// Indexes: the records themselves have their own events.
	case strings.HasPrefix(key, "revoked-sessions-before-"):
		if opts.ForgetUser != nil {
			opts.ForgetUser(strings.TrimPrefix(key, "revoked-sessions-before-"))
		}
	case strings.HasPrefix(key, "api-key:"):
		if d, ok := betterauth.StoredKeyDigest(strings.TrimPrefix(key, "api-key:"), opts.PlainKeys); ok {
			opts.Forget(d)
		}
	default: // a session, keyed by its token
		opts.Forget(sha256.Sum256([]byte(key)))
	}
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}
