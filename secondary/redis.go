package secondary

import (
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/internal/redisurl"
)

// DefaultTimeout bounds each call to secondary storage.
const DefaultTimeout = time.Second

// RedisOptions say how to reach the app's secondary storage.
type RedisOptions struct {
	// URL is redis://[user:pass@]host:port[/db], or rediss:// for TLS; more
	// nodes of a cluster go in addr parameters
	// (redis://h1:6379?addr=h2:6379).
	URL string
	// Timeout bounds dialing, and each read and write. Default:
	// DefaultTimeout.
	Timeout time.Duration
}

// Validate checks the options without connecting. Open is more lenient:
// it takes a negative Timeout for the default.
func (o RedisOptions) Validate() error {
	if _, err := redisurl.Parse(o.URL, ""); err != nil {
		return err
	}
	if o.Timeout < 0 {
		return errors.New("timeout must not be negative")
	}
	return nil
}

// Open returns a client of the app's secondary storage. It does not
// connect: the first command does.
//
// Its settings differ from the shared cache tier's (rediscache.Open), which
// gives up at once because the gateway can read the database instead. Here
// a failure answers 503, so the client tries a little harder, within the
// caller's deadline:
//   - a command is retried once (MaxRetries 1): a pooled connection that
//     died with a Redis restart or failover costs no request, and every
//     read of the store is idempotent (go-redis's default, 3 retries with
//     backoff, would hold a request for seconds);
//   - a refused dial is tried once more (DialerRetries 2), not five times;
//   - the caller's deadline bounds every read, write and retry
//     (ContextTimeoutEnabled): the cache's lookup timeout is the limit of
//     one lookup, whatever the retries;
//   - waiting for a pooled connection is bounded by Timeout too
//     (PoolTimeout; go-redis's default adds a second to it): a pool that
//     stays exhausted that long means Redis is stuck.
func Open(opts RedisOptions) (redis.UniversalClient, error) {
	uo, err := redisurl.Parse(opts.URL, "")
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout, uo.PoolTimeout = timeout, timeout, timeout, timeout
	uo.MaxRetries, uo.DialerRetries = 1, 2
	uo.ContextTimeoutEnabled = true
	return redis.NewUniversalClient(uo), nil
}
