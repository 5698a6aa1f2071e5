package caddyauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/rediscache"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

// config is the schema package's view of the configured schema; unset
// fields are detected from the database on first use.
func (s Schema) config() schema.Config {
	return schema.Config{
		Naming:       schema.Naming(s.Naming),
		UserTable:    s.UserTable,
		SessionTable: s.SessionTable,
		APIKeyTable:  s.APIKeyTable,
		UsePlural:    s.UsePlural,
		Owner:        schema.Owner(s.APIKeyOwner),
		Columns:      s.Columns,
	}
}

// backends shares one database pool and one record cache between every
// handler configured with the same backend, and keeps them (warm) across
// config reloads, which provision the new handlers before cleaning up the
// old ones.
var backends = caddy.NewUsagePool()

// backendConfig is everything that shapes a backend; its hash is the pool
// key. It holds the resolved DSN, so it is never logged.
type backendConfig struct {
	Database   string
	PlainKeys  bool
	Timeout    time.Duration
	Schema     Schema
	Cache      Cache
	Redis      *Redis            // with its URL resolved, and Key the sealer's fingerprint
	Secondary  *SecondaryStorage // with its URL resolved
	NoListener bool

	sealer *cache.Sealer // authenticates what goes through Redis; set with Redis
}

type backend struct {
	db        store.DB
	redis     io.Closer // nil without Redis
	secondary io.Closer // nil without secondary storage
	cache     *cache.Store
	bus       *rediscache.Bus // the shared Redis, for relaying invalidations
	sealer    *cache.Sealer
	instance  string           // this backend's id on the bus
	store     betterauth.Store // what handlers read: the cache, starting the watchers on first use
	streams   *streams         // open streams, ended on revocation
	revoker   *revoker
	rejected  throttle.Log // relayed messages that failed authentication
	stale     throttle.Log // relayed messages outside cache.MessageWindow
	skewed    throttle.Log // relayed messages stamped beyond cache.ClockSkew
	relayed   replays      // relayed messages applied, against replays
	logger    *zap.Logger

	stop    context.CancelFunc // ends the revocation watchers
	running sync.WaitGroup     // the watchers started
}

// Destruct stops the listener and closes Redis and the database when the
// last handler using them is cleaned up.
func (b *backend) Destruct() error {
	b.stop()
	b.running.Wait()
	if b.secondary != nil {
		b.secondary.Close()
	}
	if b.redis != nil {
		b.redis.Close()
	}
	return b.db.Close()
}

func loadBackend(cfg backendConfig, logger *zap.Logger) (*backend, string, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(raw)
	key := hex.EncodeToString(sum[:])
	v, _, err := backends.LoadOrNew(key, func() (caddy.Destructor, error) { return newBackend(cfg, logger) })
	if err != nil {
		return nil, "", err
	}
	return v.(*backend), key, nil
}

func newBackend(cfg backendConfig, logger *zap.Logger) (*backend, error) {
	db, err := store.Open(cfg.Database, store.Options{
		Schema:    cfg.Schema.config(),
		PGSchema:  cfg.Schema.PGSchema,
		PlainKeys: cfg.PlainKeys,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	// The watchers get their own context: the backend outlives the Caddy
	// config (and context) that created it.
	ctx, stop := context.WithCancel(context.Background())
	b := &backend{db: db, streams: newStreams(), stop: stop, logger: logger}
	c := cfg.Cache
	opts := cache.Options{
		TTL:                  time.Duration(c.TTL),
		APIKeyTTL:            time.Duration(c.APIKeyTTL),
		SessionTTL:           time.Duration(c.SessionTTL),
		Jitter:               c.Jitter,
		StaleWhileRevalidate: time.Duration(c.StaleWhileRevalidate),
		StaleIfError:         time.Duration(c.StaleIfError),
		NegativeTTL:          time.Duration(c.NegativeTTL),
		MaxEntries:           c.MaxEntries,
		MaxNegative:          c.MaxNegative,
		LookupTimeout:        cfg.Timeout,
		Logger:               logger.Named("cache"),
	}
	if r := cfg.Redis; r != nil {
		client, err := rediscache.Open(rediscache.Options{URL: r.URL, SentinelMaster: r.SentinelMaster, Timeout: time.Duration(r.Timeout)})
		if err != nil {
			b.Destruct()
			return nil, err
		}
		b.redis, b.sealer = client, cfg.sealer
		b.bus = rediscache.NewBus(client)
		opts.Remote, opts.Sealer, opts.RemoteTimeout, opts.RemotePrefix = rediscache.New(client), cfg.sealer, time.Duration(r.Timeout), r.Prefix
		if opts.RemotePrefix == "" {
			// Gateways share entries only when they read the same rows.
			opts.RemoteScope = db.Scope
		}
	}
	var inner betterauth.Store = db
	if ss := cfg.Secondary; ss != nil {
		client, err := secondary.Open(secondary.RedisOptions{URL: ss.URL, Timeout: time.Duration(ss.Timeout)})
		if err != nil {
			b.Destruct()
			return nil, fmt.Errorf("secondary_storage: %w", err)
		}
		b.secondary = client
		if inner, err = secondary.New(client, db, secondary.Options{
			Prefix: ss.Prefix, Sessions: secondary.Mode(ss.Sessions), APIKeys: secondary.Mode(ss.APIKeys), PlainKeys: cfg.PlainKeys,
		}); err != nil {
			b.Destruct()
			return nil, fmt.Errorf("secondary_storage: %w", err)
		}
	}
	b.cache = cache.New(inner, opts)
	b.store = b.cache
	if b.bus != nil {
		b.instance = rand.Text()
	}
	b.revoker = newRevoker(b.apply, logger)
	watchers := append(b.watchers(ctx, cfg, logger), func() { b.revoker.run(ctx) })
	// Provision does no network I/O: the watchers connect on first use.
	b.store = &firstUse{Store: b.cache, start: func() {
		for _, w := range watchers {
			b.running.Go(w)
		}
	}}
	return b, nil
}

// watchers are the goroutines that tell the cache about revocations: the
// other gateways over the shared Redis, and unless turned off, the
// PostgreSQL listener and the secondary storage's keyspace events. Each
// of them forgets everything cached when it (re)connects: what changed
// while it was not listening is unknown.
func (b *backend) watchers(ctx context.Context, cfg backendConfig, logger *zap.Logger) []func() {
	var ws []func()
	if b.bus != nil && b.cache.Shared() {
		ws = append(ws, func() { b.relay(ctx, logger) })
	}
	if cfg.NoListener {
		return ws
	}
	if b.db.Kind() == "postgres" {
		targets := map[string]cache.Target{"apikey": cache.TargetAPIKey, "session": cache.TargetSession, "user": cache.TargetUser}
		ws = append(ws, func() {
			pgstore.Listen(ctx, pgstore.ListenOptions{
				DSN:     cfg.Database,
				Logger:  logger.Named("revocations"),
				OnReset: func() { b.cache.Purge(ctx) },
				OnInvalidate: func(inv pgstore.Invalidation) {
					if target, ok := targets[inv.Kind]; ok && inv.ID != "" {
						b.revoker.add(cache.Revocation{Target: target, ID: inv.ID}, true)
					}
				},
			})
		})
	}
	if client, ok := b.secondary.(redis.UniversalClient); ok {
		prefix := secondary.DefaultPrefix
		if cfg.Secondary.Prefix != nil {
			prefix = *cfg.Secondary.Prefix
		}
		ws = append(ws, func() {
			secondary.Watch(ctx, client, secondary.WatchOptions{
				Prefix: prefix, PlainKeys: cfg.PlainKeys, Logger: logger.Named("secondary_storage"),
				Ready:  func() { b.cache.Purge(ctx) },
				Forget: func(d [32]byte) { b.revoker.add(cache.Revocation{Target: cache.TargetCredential, Digest: d}, true) },
				ForgetUser: func(id string) {
					b.revoker.add(cache.Revocation{Target: cache.TargetUser, ID: id}, true)
				},
			})
		})
	}
	return ws
}

// apply carries out one batch of revocations: the cache (here and shared),
// the open streams they concern, and, for those heard here, the other
// gateways.
func (b *backend) apply(ctx context.Context, revs []cache.Revocation, relay []cache.Revocation) {
	at := time.Now()
	n, epoch := b.cache.Revoke(ctx, revs...)
	b.endStreams(revs)
	if c := b.logger.Check(zapcore.DebugLevel, "revoked"); c != nil {
		c.Write(zap.Int("revocations", len(revs)), zap.Int("entries", n), zap.Uint64("shared_epoch", epoch))
	}
	if len(relay) > 0 && b.bus != nil {
		b.publish(ctx, busMessage{From: b.instance, Epoch: epoch, At: at.UnixMilli(), Revs: wireRevs(relay)})
	}
}

func (b *backend) endStreams(revs []cache.Revocation) {
	for _, r := range revs {
		switch r.Target {
		case cache.TargetAPIKey, cache.TargetSession, cache.TargetUser:
			b.streams.revoked(r.Target, r.ID)
		}
	}
}

// firstUse runs start once, on the first lookup.
type firstUse struct {
	betterauth.Store
	once  sync.Once
	start func()
}

func (f *firstUse) Lookup(ctx context.Context, l betterauth.Lookup) (betterauth.Record, error) {
	f.once.Do(f.start)
	return f.Store.Lookup(ctx, l)
}
