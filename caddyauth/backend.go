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
	Redis      *Redis            // with its URL resolved
	Secondary  *SecondaryStorage // with its URL resolved
	NoListener bool
}

type backend struct {
	db        store.DB
	redis     io.Closer // nil without Redis
	secondary io.Closer // nil without secondary storage
	cache     *cache.Store
	bus       *rediscache.Remote // the shared Redis, for broadcasting invalidations
	channel   string             // where invalidations are broadcast
	instance  string             // this backend's id on the bus
	store     betterauth.Store   // what handlers read: the cache, starting the listener on first use
	streams   *streams           // open streams, ended on revocation

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
	// The listener gets its own context: the backend outlives the Caddy
	// config (and context) that created it.
	ctx, stop := context.WithCancel(context.Background())
	b := &backend{db: db, streams: newStreams(), stop: stop}
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
		b.redis = client
		b.bus = rediscache.New(client)
		opts.Remote, opts.RemoteTimeout, opts.RemotePrefix = b.bus, time.Duration(r.Timeout), r.Prefix
		if opts.RemotePrefix == "" {
			// Gateways share entries only when they read the same database.
			sum := sha256.Sum256([]byte(db.Identity()))
			opts.RemotePrefix = "caddy-betterauth:" + hex.EncodeToString(sum[:4]) + ":"
		}
	}
	var inner betterauth.Store = db
	if ss := cfg.Secondary; ss != nil {
		timeout := time.Duration(ss.Timeout)
		if timeout <= 0 {
			timeout = time.Second
		}
		client, err := rediscache.Open(rediscache.Options{URL: ss.URL, Timeout: timeout})
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
		b.instance, b.channel = rand.Text(), opts.RemotePrefix+"v1:invalidations"
	}
	if watchers := b.watchers(ctx, cfg, logger); len(watchers) > 0 {
		// Provision does no network I/O: the watchers connect on first use.
		b.store = &firstUse{Store: b.cache, start: func() {
			for _, w := range watchers {
				b.running.Go(w)
			}
		}}
	}
	return b, nil
}

// watchers are the goroutines that tell the cache about revocations: the
// other gateways over the shared Redis, and unless turned off, the
// PostgreSQL listener and the secondary storage's keyspace events.
func (b *backend) watchers(ctx context.Context, cfg backendConfig, logger *zap.Logger) []func() {
	var ws []func()
	if b.bus != nil {
		ws = append(ws, func() {
			for ctx.Err() == nil {
				err := b.bus.Subscribe(ctx, b.channel, func() {
					logger.Info("listening for invalidations from other gateways", zap.String("channel", b.channel))
				}, func(raw []byte) { b.receive(ctx, raw) })
				if err != nil && ctx.Err() == nil {
					logger.Warn("cannot hear other gateways; retrying", zap.Error(err))
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		})
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
					if target, ok := targets[inv.Kind]; ok {
						n := b.invalidate(ctx, busMessage{Target: target, ID: inv.ID}, true)
						if c := logger.Check(zapcore.DebugLevel, "revoked"); c != nil {
							c.Write(zap.String("kind", inv.Kind), zap.String("id", inv.ID), zap.Int("entries", n))
						}
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
				Forget:     func(d [32]byte) { b.invalidate(ctx, busMessage{Digest: d[:]}, true) },
				ForgetUser: func(id string) { b.invalidate(ctx, busMessage{Target: cache.TargetUser, ID: id}, true) },
			})
		})
	}
	return ws
}

// busMessage is one invalidation, applied here and sent to the other
// gateways on the shared Redis: a key, session or user by id, or a
// credential by its digest. It holds no secret.
type busMessage struct {
	From   string       `json:"from"`
	Target cache.Target `json:"t,omitempty"`
	ID     string       `json:"id,omitempty"`
	Digest []byte       `json:"d,omitempty"`
}

// invalidate drops what m names from the cache and ends the streams it
// concerns; with broadcast, it tells the other gateways too.
func (b *backend) invalidate(ctx context.Context, m busMessage, broadcast bool) int {
	var n int
	if len(m.Digest) == 32 {
		n = b.cache.Forget(ctx, [32]byte(m.Digest))
	} else if m.Target != 0 && m.ID != "" {
		n = b.cache.Invalidate(ctx, m.Target, m.ID)
		b.streams.revoked(m.Target, m.ID)
	}
	if broadcast && b.bus != nil {
		m.From = b.instance
		if raw, err := json.Marshal(m); err == nil {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			b.bus.Publish(pctx, b.channel, raw)
			cancel()
		}
	}
	return n
}

// receive applies another gateway's invalidation.
func (b *backend) receive(ctx context.Context, raw []byte) {
	var m busMessage
	if json.Unmarshal(raw, &m) != nil || m.From == b.instance {
		return
	}
	b.invalidate(ctx, m, false)
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
