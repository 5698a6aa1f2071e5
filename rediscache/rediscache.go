// Package rediscache is the Redis side of the shared cache: a cache.Remote
// over a go-redis universal client (one node, Sentinel or Cluster).
package rediscache

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/cache"
)

// Options configure a client.
type Options struct {
	// URL is redis://[user:pass@]host:port[/db], or rediss:// for TLS. More
	// nodes of a cluster go in addr parameters:
	// redis://h1:6379?addr=h2:6379&addr=h3:6379.
	URL string
	// SentinelMaster, when set, makes the URL's hosts Sentinels of that
	// master.
	SentinelMaster string
	// Timeout bounds dialing, reading and writing. Default:
	// cache.DefaultRemoteTimeout.
	Timeout time.Duration
}

// Open returns a client for opts. It does not connect: the first command
// does.
func Open(opts Options) (redis.UniversalClient, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		// The URL may hold a password: do not repeat it.
		return nil, errors.New("redis: want a redis:// or rediss:// URL")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = cache.DefaultRemoteTimeout
	}
	uo := &redis.UniversalOptions{MasterName: opts.SentinelMaster}
	if u.Query().Has("addr") {
		co, err := redis.ParseClusterURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: cluster URL: %s", redact(err))
		}
		uo.Addrs, uo.Username, uo.Password, uo.TLSConfig = co.Addrs, co.Username, co.Password, co.TLSConfig
	} else {
		o, err := redis.ParseURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: URL: %s", redact(err))
		}
		uo.Addrs, uo.Username, uo.Password, uo.DB, uo.TLSConfig = []string{o.Addr}, o.Username, o.Password, o.DB, o.TLSConfig
	}
	uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout = timeout, timeout, timeout
	// A slow or absent Redis must not slow requests: no command retries and
	// one dial attempt (go-redis would otherwise redial until the timeout),
	// then fall through to the database.
	uo.MaxRetries, uo.DialerRetries = -1, 1
	return redis.NewUniversalClient(uo), nil
}

// redact keeps go-redis's reason without any URL it quotes.
func redact(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "invalid"
}

// Remote adapts a client to cache.Remote.
type Remote struct{ c redis.UniversalClient }

// New returns the cache.Remote over c.
func New(c redis.UniversalClient) *Remote { return &Remote{c: c} }

// Get implements cache.Remote: one MGET of the entry and the epoch.
//
// In a Redis Cluster the two keys must hash to one slot; the cache's keys
// share their prefix, so give it a hash tag there ({caddy-betterauth}:).
func (r *Remote) Get(ctx context.Context, key, epochKey string) ([]byte, uint64, error) {
	vals, err := r.c.MGet(ctx, key, epochKey).Result()
	if err != nil {
		return nil, 0, err
	}
	var epoch uint64
	if s, ok := vals[1].(string); ok {
		if epoch, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("redis: epoch: %w", err)
		}
	}
	s, ok := vals[0].(string)
	if !ok {
		return nil, epoch, nil
	}
	return []byte(s), epoch, nil
}

// Bump implements cache.Remote.
func (r *Remote) Bump(ctx context.Context, epochKey string) error {
	return r.c.Incr(ctx, epochKey).Err()
}

// Set implements cache.Remote.
func (r *Remote) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return r.c.Set(ctx, key, value, ttl).Err()
}

var _ cache.Remote = (*Remote)(nil)

// Publish sends msg on channel.
func (r *Remote) Publish(ctx context.Context, channel string, msg []byte) error {
	return r.c.Publish(ctx, channel, msg).Err()
}

// Subscribe calls handle for every message on channel until ctx ends;
// ready, if set, is called once Redis has confirmed the subscription.
// go-redis resubscribes by itself after a connection loss.
func (r *Remote) Subscribe(ctx context.Context, channel string, ready func(), handle func([]byte)) error {
	ps := r.c.Subscribe(ctx, channel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			handle([]byte(m.Payload))
		}
	}
}
