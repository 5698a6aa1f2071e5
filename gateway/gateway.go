// Package gateway assembles caddy-betterauth for any front end, with no
// Caddy in it: the Better-Auth store, the cache tiers, secondary storage,
// the revocation listeners and the relay between replicas, and the open
// streams a revocation ends. The Caddy module (package caddyauth) and the
// standalone ext_authz server (cmd/betterauth-extauthz) are thin adapters
// over one Gateway and the betterauth.Gate it makes.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/internal/redisurl"
	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/ratelimit"
	"github.com/caddy-betterauth/caddy-betterauth/rediscache"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
	"github.com/caddy-betterauth/caddy-betterauth/shield"
	"github.com/caddy-betterauth/caddy-betterauth/store"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// usageRules returns the rules of each api-key configuration: its
// rateLimit.enabled from api_key_configs, and the release family from
// better_auth_version, or else from the table (the userId owner column of
// the plugin built into better-auth 1.3 and 1.4), or else the newest.
func (a assembly) usageRules(db store.DB) func(configID string) usage.Rules {
	family := usage.Current
	pinned := a.Usage.BetterAuthVersion != ""
	if pinned {
		family, _ = usage.ParseVersion(a.Usage.BetterAuthVersion) // checked by Validate
	}
	off := map[string]bool{}
	for id, c := range a.APIKeyConfigs {
		if c.RateLimitEnabled != nil && !*c.RateLimitEnabled {
			off[normalConfigID(id)] = true
		}
	}
	return func(configID string) usage.Rules {
		f := family
		if !pinned {
			// Known by now: the key was read through the same layout.
			if l, err := db.Layout(context.Background()); err == nil && l.Owner == schema.UserID {
				f = usage.Legacy
			}
		}
		return usage.Rules{Family: f, RateLimitOff: off[normalConfigID(configID)]}
	}
}

// usagePrefix is where usage redis keeps its keys: the redis block's
// prefix, or one derived from the database's scope, so that gateways
// counting one database count together.
func usagePrefix(configured string, db store.DB) func(context.Context) (string, error) {
	if configured != "" {
		return func(context.Context) (string, error) { return configured, nil }
	}
	var prefix atomic.Pointer[string]
	return func(ctx context.Context) (string, error) {
		if p := prefix.Load(); p != nil {
			return *p, nil
		}
		scope, err := db.Scope(ctx) // the same each time: racing callers agree
		if err != nil {
			return "", err
		}
		p := cache.DefaultPrefix(scope)
		prefix.Store(&p)
		return p, nil
	}
}

// normalConfigID folds Better-Auth's spellings of the default
// configuration (NULL, "" and "default").
func normalConfigID(id string) string {
	if id == "" {
		return "default"
	}
	return id
}

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

// cache is the cache package's view of the cache block, without the
// shared tier (which Open adds).
func (c Cache) options(lookupTimeout time.Duration) cache.Options {
	return cache.Options{
		TTL:                  time.Duration(c.TTL),
		APIKeyTTL:            time.Duration(c.APIKeyTTL),
		SessionTTL:           time.Duration(c.SessionTTL),
		Jitter:               c.Jitter,
		StaleWhileRevalidate: time.Duration(c.StaleWhileRevalidate),
		StaleIfError:         time.Duration(c.StaleIfError),
		NegativeTTL:          time.Duration(c.NegativeTTL),
		MaxEntries:           c.MaxEntries,
		MaxNegative:          c.MaxNegative,
		LookupTimeout:        lookupTimeout,
	}
}

// options is the secondary package's view of the secondary_storage block.
func (ss SecondaryStorage) options(plainKeys bool) secondary.Options {
	return secondary.Options{Prefix: ss.Prefix, Sessions: secondary.Mode(ss.Sessions), APIKeys: secondary.Mode(ss.APIKeys), PlainKeys: plainKeys}
}

// assembly is everything in Options that shapes a Gateway (not a Gate),
// with the owners' defaults filled in: front ends whose assemblies are
// equal share one Gateway. It holds the resolved DSN, so it is never
// logged.
type assembly struct {
	Database   string
	PlainKeys  bool
	Timeout    time.Duration
	Schema     Schema
	Cache      Cache
	Redis      *Redis // Key replaced by the sealer's fingerprint
	Secondary  *secondaryAssembly
	NoListener bool
	BruteForce *BruteForce
	// Usage is set when uses are counted; with the configurations' rate
	// limit settings, which its rules read.
	Usage         *Usage
	APIKeyConfigs map[string]APIKeyConfig
	// AllowedIPsField is where API keys' allow-lists are read: the store
	// reads metadata for it.
	AllowedIPsField string

	// JWT says how JWT access tokens are verified; nil without an oauth
	// block.
	JWT *jwtAssembly

	sealer *cache.Sealer // authenticates what goes through Redis; set with Redis
}

// jwtAssembly is who issues the JWT access tokens a gateway accepts, and
// where their keys are.
type jwtAssembly struct {
	Issuers []string
	JWKSURL string // "" for the jwks table
}

type secondaryAssembly struct {
	Store secondary.Options
	Redis secondary.RedisOptions // with its URL resolved
}

// assemble checks resolved options and derives the assembly.
func (o *Options) assemble() (assembly, error) {
	a := assembly{
		Database:   o.Database,
		PlainKeys:  o.DisableKeyHashing,
		Timeout:    time.Duration(o.LookupTimeout),
		NoListener: o.NoRevocationListener,
		BruteForce: o.BruteForce,

		AllowedIPsField: o.APIKeyAllowedIPsField,
	}
	if u := o.Usage; u != nil && u.Mode != "" && u.Mode != "off" {
		a.Usage, a.APIKeyConfigs = u, o.APIKeyConfigs
	}
	if oa := o.OAuth; oa != nil {
		a.JWT = &jwtAssembly{Issuers: slices.Clone(oa.Issuers), JWKSURL: oa.JWKSURL}
		slices.Sort(a.JWT.Issuers)
	}
	if a.Database == "" {
		return a, errors.New("database is required (is its environment variable set?)")
	}
	if o.Schema != nil {
		a.Schema = *o.Schema
	}
	if o.Cache != nil {
		a.Cache = *o.Cache
	}
	if ss := o.SecondaryStorage; ss != nil {
		if ss.URL == "" {
			return a, errors.New("secondary_storage: url is required (is its environment variable set?)")
		}
		ro := secondary.RedisOptions{URL: ss.URL, Timeout: time.Duration(ss.Timeout)}
		if err := ro.Validate(); err != nil {
			return a, fmt.Errorf("secondary_storage: %w", err)
		}
		st := ss.options(o.DisableKeyHashing).WithDefaults()
		st.AllowedIPsField = o.APIKeyAllowedIPsField
		a.Secondary = &secondaryAssembly{Store: st, Redis: ro}
	}
	if o.Redis != nil {
		r := *o.Redis
		if r.URL == "" {
			return a, errors.New("redis: url is required (is its environment variable set?)")
		}
		// Shared entries are sealed with a key only the gateways hold:
		// Redis itself is not trusted. A key of the redis block is mixed
		// with the secret, so that apps deployed from one template with one
		// cache key but their own secrets never share entries.
		source := o.Secret
		if r.Key != "" || r.named {
			if len(r.Key) < cache.MinSharedKeyLen {
				return a, fmt.Errorf("redis: key must be at least %d characters (is its environment variable set?)", cache.MinSharedKeyLen)
			}
			source = r.Key + "\x00" + o.Secret
		}
		if source == "" {
			return a, errors.New("redis: shared entries must be authenticated, and there is no key to do it with: " +
				"set secret (BETTER_AUTH_SECRET), or give the redis block a key of its own (key {env.CACHE_KEY})")
		}
		sealer, err := cache.NewSealer(source)
		if err != nil {
			return a, fmt.Errorf("redis: %w", err)
		}
		fp := sealer.Fingerprint()
		r.Key = hex.EncodeToString(fp[:]) // what the sharing key hashes: never the key itself
		a.Redis, a.sealer = &r, sealer
	}
	return a, nil
}

// reading names what, beside the rows (store.DB.Scope), decides the
// records a gateway reads: keys stored in plain text, the metadata field of
// keys' allow-lists, and secondary storage
// (its prefix, what is read there, and the Redis it is on, without
// credentials). A record one reading finds may be one another would not
// (the stored hash of a key taken as a key, a session deleted from
// storage but kept in the database), so gateways whose readings differ
// must not share entries. Empty for the database read alone, whose shared
// prefix it leaves as it was.
func (a assembly) reading() string {
	var b strings.Builder
	if a.PlainKeys {
		b.WriteString("\nplain_keys=true")
	}
	if a.AllowedIPsField != "" {
		fmt.Fprintf(&b, "\napi_key_allowed_ips_field=%q", a.AllowedIPsField)
	}
	if j := a.JWT; j != nil {
		// A JWT's record is what its issuer's keys vouched for.
		fmt.Fprintf(&b, "\njwt_issuers=%q jwks=%q", j.Issuers, j.JWKSURL)
	}
	if ss := a.Secondary; ss != nil {
		var at string
		if uo, err := redisurl.Parse(ss.Redis.URL, ""); err == nil { // checked by assemble
			at = fmt.Sprintf("%s/%d", strings.Join(uo.Addrs, ","), uo.DB)
		}
		fmt.Fprintf(&b, "\nsecondary_storage=%q sessions=%s api_keys=%s redis=%s", *ss.Store.Prefix, ss.Store.Sessions, ss.Store.APIKeys, at)
	}
	return b.String()
}

// SharingKey returns the key under which front ends configured alike share
// one Gateway (Caddy's handlers and app, through its usage pool), and an
// error if the resolved options cannot make one. It changes nothing.
func SharingKey(o Options) (string, error) {
	a, err := o.assemble()
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// Gateway is one assembly: the store and caches every front end configured
// alike reads, and the watchers that keep them honest.
type Gateway struct {
	db        store.DB
	redis     io.Closer // nil without Redis
	secondary io.Closer // nil without secondary storage
	cache     *cache.Store
	bus       *rediscache.Bus // the shared Redis, for relaying invalidations
	sealer    *cache.Sealer
	instance  string            // this gateway's id on the bus
	store     betterauth.Store  // what gates read: the cache, starting the watchers on first use
	streams   *Streams          // open requests, ended on revocation
	shield    betterauth.Shield // nil without brute_force
	limits    *ratelimit.Store  // every route's rate_limit buckets
	meter     betterauth.Meter  // nil without usage counting
	counter   *usage.Redis      // the meter, with usage redis
	keyIPs    *keyProblems      // malformed allow-lists logged, once per key
	revoker   *revoker
	rejected  throttle.Log // relayed messages that failed authentication
	stale     throttle.Log // relayed messages outside cache.MessageWindow
	skewed    throttle.Log // relayed messages stamped beyond cache.ClockSkew
	relayed   replays      // relayed messages applied, against replays
	logger    *zap.Logger
	metrics   *metrics.Set // nil: nothing counted
	dsn       string       // the database, for the audit writers

	auditMu sync.Mutex
	sinks   map[sinkKey]*sharedSink // audit events bound for each table

	stop    context.CancelFunc // ends the revocation watchers
	running sync.WaitGroup     // the watchers started
}

// Open assembles a gateway from resolved options (see Options.Resolve). It
// does no network I/O: the database, Redis and the watchers connect on the
// first lookup. Close it when done.
func Open(o Options, logger *zap.Logger) (*Gateway, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg, err := o.assemble()
	if err != nil {
		return nil, err
	}
	sc := cfg.Schema.config()
	sc.AllowedIPsField = cfg.AllowedIPsField
	db, err := store.Open(cfg.Database, store.Options{
		Schema:    sc,
		PGSchema:  cfg.Schema.PGSchema,
		PlainKeys: cfg.PlainKeys,
		Writable:  cfg.Usage != nil && cfg.Usage.Mode == "database",
		// The meter's bound on a use (usage.NewDatabase below).
		UsageTimeout: cfg.Timeout,
		Logger:       logger,
	})
	if err != nil {
		return nil, err
	}
	// The watchers get their own context: the gateway outlives the config
	// (and context) that opened it.
	ctx, stop := context.WithCancel(context.Background())
	g := &Gateway{db: db, streams: NewCountedStreams(o.Metrics), stop: stop, logger: logger, keyIPs: newKeyProblems(logger), metrics: o.Metrics, dsn: cfg.Database}
	if cfg.Usage != nil && cfg.Usage.Mode == "database" {
		g.meter = countMeter(usage.NewDatabase(db, cfg.usageRules(db), cfg.Timeout), metrics.UsageDatabase, o.Metrics)
	}
	var local *shield.Shield
	if b := cfg.BruteForce; b != nil {
		if local = shield.New(shield.Options{Failures: b.Failures, Window: time.Duration(b.Window), MaxClients: b.MaxClients}); local != nil {
			g.shield = local
		}
	}
	g.limits = ratelimit.NewStore(ratelimit.Options{Logger: logger.Named("rate_limit")})
	opts := cfg.Cache.options(cfg.Timeout)
	opts.Logger = logger.Named("cache")
	opts.AllowedIPsField = cfg.AllowedIPsField
	opts.Metrics, opts.Backend = o.Metrics, metrics.BackendPostgres
	switch db.Dialect() {
	case store.SQLite:
		opts.Backend = metrics.BackendSQLite
	case store.MySQL:
		opts.Backend = metrics.BackendMySQL
	}
	if r := cfg.Redis; r != nil {
		client, err := rediscache.Open(rediscache.Options{URL: r.URL, SentinelMaster: r.SentinelMaster, Timeout: time.Duration(r.Timeout)})
		if err != nil {
			g.Close()
			return nil, err
		}
		// The edge limits and the shield share the cache's Redis, under
		// its prefix (not scoped by database: set prefix to keep
		// deployments on one Redis apart).
		prefix := r.Prefix
		if prefix == "" {
			prefix = ratelimit.DefaultPrefix
		}
		g.limits = ratelimit.NewStore(ratelimit.Options{Redis: client, Prefix: prefix, Logger: logger.Named("rate_limit")})
		if local != nil {
			g.shield = shield.NewShared(shield.SharedOptions{Local: local, Redis: client, Prefix: prefix, Logger: logger.Named("brute_force")})
		}
		g.redis, g.sealer = client, cfg.sealer
		g.bus = rediscache.NewBus(client)
		if cfg.Usage != nil && cfg.Usage.Mode == "redis" {
			mirror, ok := db.(usage.Mirror)
			if !ok || db.Dialect() != store.Postgres {
				g.Close()
				return nil, errors.New("usage: mode redis writes uses back to PostgreSQL; on SQLite or MySQL use mode database")
			}
			g.counter = usage.NewRedis(usage.RedisOptions{
				Client: client, Mirror: mirror, Rules: cfg.usageRules(db), Prefix: usagePrefix(r.Prefix, db),
				Interval: time.Duration(cfg.Usage.FlushInterval), Timeout: cfg.Timeout, Logger: logger.Named("usage"),
			})
			g.meter = countMeter(g.counter, metrics.UsageRedis, o.Metrics)
		}
		opts.Remote, opts.Sealer, opts.RemoteTimeout, opts.RemotePrefix = rediscache.New(client), cfg.sealer, time.Duration(r.Timeout), r.Prefix
		if opts.RemotePrefix == "" {
			// Gateways share entries only when they read the same rows,
			// and read them alike.
			reading := cfg.reading()
			opts.RemoteScope = func(ctx context.Context) (string, error) {
				scope, err := db.Scope(ctx)
				return scope + reading, err
			}
		}
	}
	var inner betterauth.Store = db
	if ss := cfg.Secondary; ss != nil {
		client, err := secondary.Open(ss.Redis)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("secondary_storage: %w", err)
		}
		g.secondary = client
		opts.Backend = metrics.BackendSecondary
		if inner, err = secondary.New(client, db, ss.Store); err != nil {
			g.Close()
			return nil, fmt.Errorf("secondary_storage: %w", err)
		}
	}
	if j := cfg.JWT; j != nil {
		if inner, err = jwtStore(inner, db, j, logger); err != nil {
			g.Close()
			return nil, fmt.Errorf("oauth: %w", err)
		}
	}
	g.cache = cache.New(inner, opts)
	if g.bus != nil {
		g.instance = rand.Text()
	}
	g.revoker = newRevoker(g.apply, logger)
	watchers := append(g.watchers(ctx, cfg, logger), func() { g.revoker.run(ctx) })
	if g.counter != nil {
		watchers = append(watchers, func() { g.counter.Run(ctx) })
	}
	// Open does no network I/O: the watchers connect on first use.
	g.store = &firstUse{Store: g.cache, start: func() {
		for _, w := range watchers {
			g.running.Go(w)
		}
	}}
	return g, nil
}

// Close stops the watchers and closes Redis and the database.
func (g *Gateway) Close() error {
	g.stop()
	g.running.Wait()
	var errs []error
	g.auditMu.Lock()
	// Their last events, each sink within its own timeout, side by side:
	// the requests are done, the database still open.
	var closing sync.WaitGroup
	sinkErrs, i := make([]error, len(g.sinks)), 0
	for k, s := range g.sinks {
		j := i
		closing.Go(func() { sinkErrs[j] = wrap("writing audit events to "+k.table.String(), s.sink.Close()) })
		i++
	}
	closing.Wait()
	errs = append(errs, sinkErrs...)
	g.sinks = nil
	g.auditMu.Unlock()
	if g.counter != nil {
		// What this gateway counted is safe in Redis; write what is due
		// now rather than leave it to the others.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := g.counter.Flush(ctx)
		cancel()
		errs = append(errs, wrap("writing API-key uses to the database", err))
	}
	if g.secondary != nil {
		errs = append(errs, wrap("closing secondary storage", g.secondary.Close()))
	}
	if g.redis != nil {
		errs = append(errs, wrap("closing redis", g.redis.Close()))
	}
	errs = append(errs, wrap("closing the database", g.db.Close()))
	return errors.Join(errs...)
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Destruct implements caddy.Destructor (Caddy's usage pool calls it when the
// last front end using the gateway lets go), logging what Close reports.
func (g *Gateway) Destruct() error {
	err := g.Close()
	if err != nil {
		g.logger.Warn("closing the gateway", zap.Error(err))
	}
	return err
}

// sinkKey names the sink of the routes writing to one table with one
// queue size.
type sinkKey struct {
	table audit.Table
	queue int
}

// sharedSink is a sink and how many routes hold it.
type sharedSink struct {
	sink *audit.Sink
	refs int
}

// Auditor returns the audit trail of a route configured by o (nil
// without one): events logged on logger.Named("audit") and, with a
// database block, queued for the table it names, through one sink per
// table and queue size that the gateway's routes share. release lets go
// of the sink, which the last route to hold it closes (writing what it
// holds): a config reload that names another table or queue size gets a
// sink of its own, the old one ends with the old config, and a gateway
// outliving many reloads keeps no sink nobody uses. Close closes those
// still held.
func (g *Gateway) Auditor(o Options, logger *zap.Logger) (trail *audit.Log, release func(), err error) {
	release = func() {}
	a := o.Audit
	if a == nil {
		return nil, release, nil
	}
	// Checked here too: a route sharing another's gateway was not
	// validated by Open, and its queue is allocated below.
	if err := a.validate(); err != nil {
		return nil, release, err
	}
	mode, _ := audit.ParseMode(a.Events)
	if mode == audit.Off {
		return nil, release, nil
	}
	var sink *audit.Sink
	if d := a.Database; d != nil {
		t, err := audit.ParseTable(g.dsn, d.Table)
		if err != nil {
			return nil, release, err
		}
		k := sinkKey{t, d.Queue}
		if k.queue == 0 {
			k.queue = audit.DefaultQueue
		}
		g.auditMu.Lock()
		defer g.auditMu.Unlock()
		s := g.sinks[k]
		if s == nil {
			w, err := audit.OpenWriter(g.dsn, t)
			if err != nil {
				return nil, release, err
			}
			s = &sharedSink{sink: audit.NewSink(w, audit.SinkOptions{Queue: k.queue, Logger: g.logger.Named("audit"), Counter: g.metrics})}
			if g.sinks == nil {
				g.sinks = map[sinkKey]*sharedSink{}
			}
			g.sinks[k] = s
		}
		s.refs++
		sink = s.sink
		var once sync.Once
		release = func() { once.Do(func() { g.releaseSink(k, s) }) }
	}
	return audit.NewLog(mode, logger.Named("audit"), sink), release, nil
}

// releaseSink drops a route's hold on s, closing it after the last.
func (g *Gateway) releaseSink(k sinkKey, s *sharedSink) {
	g.auditMu.Lock()
	s.refs--
	last := s.refs == 0 && g.sinks[k] == s
	if last {
		delete(g.sinks, k)
	}
	g.auditMu.Unlock()
	if last {
		if err := s.sink.Close(); err != nil {
			g.logger.Warn("writing audit events to "+k.table.String(), zap.Error(err))
		}
	}
}

// Store is what the gateway's gates read: the cache tiers over the
// database (and secondary storage).
func (g *Gateway) Store() betterauth.Store { return g.store }

// Streams are the gateway's open requests, ended when their credential is
// revoked.
func (g *Gateway) Streams() *Streams { return g.streams }

// Gate returns the request decision o describes over this gateway's store.
// o must be resolved; the settings that shape the assembly are ignored here,
// and logger hears its warnings and failed lookups.
func (g *Gateway) Gate(o Options, logger *zap.Logger) (*betterauth.Gate, error) {
	return newGate(o, g.store, g.shield, g.meter, g.keyIPs, g.limits, logger)
}

// NewGate returns the request decision o describes over any store: a
// Gateway's, or in tests a fake.
func NewGate(o Options, s betterauth.Store, logger *zap.Logger) (*betterauth.Gate, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	return newGate(o, s, nil, nil, newKeyProblems(logger), ratelimit.NewStore(ratelimit.Options{}), logger)
}

func newGate(o Options, s betterauth.Store, sh betterauth.Shield, m betterauth.Meter, kp *keyProblems, limits *ratelimit.Store,
	logger *zap.Logger) (*betterauth.Gate, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	switch {
	case o.Secret == "":
		logger.Warn("no secret: signed session tokens and session cookies will be rejected; set secret to BETTER_AUTH_SECRET")
	case len(o.Secret) < 32:
		logger.Warn("the secret is shorter than the 32 characters Better-Auth asks for")
	}
	var metadataURL, scope string
	var policy betterauth.OAuthPolicy
	if o.OAuth != nil {
		res, err := o.OAuth.Protected()
		if err != nil {
			return nil, err
		}
		metadataURL, scope = res.MetadataURL(), strings.Join(res.Scopes, " ")
		policy = betterauth.OAuthPolicy{Audience: res.URL, AllowUnbound: o.OAuth.AllowUnboundTokens}
	}
	v, err := betterauth.NewVerifier(betterauth.Options{Store: s, Secret: o.Secret, ConfigIDs: o.APIKeyConfigIDs,
		OrgConfigIDs: o.OrgConfigIDs(), Metered: m != nil, OAuth: policy})
	if err != nil {
		return nil, err
	}
	rules, err := o.rules()
	if err != nil {
		return nil, err
	}
	tiers, err := o.tiers()
	if err != nil {
		return nil, err
	}
	var lim betterauth.Limiter // a nil *ratelimit.Limiter is not a nil interface
	if l, err := limits.Limiter(tiers); err != nil {
		return nil, err
	} else if l != nil {
		lim = l
		if o.Metrics != nil && !o.DisableMetrics {
			lim = countedLimiter{l, o.Metrics}
		}
	}
	var observer betterauth.Observer // a nil *metrics.Decisions is not a nil interface
	if o.Metrics != nil && !o.DisableMetrics {
		observer = o.Metrics.Decisions(o.FrontEnd)
	}
	return betterauth.NewGate(betterauth.GateConfig{
		ResourceMetadata: metadataURL,
		Scope:            scope,
		Verifier:         v,
		Extract: betterauth.ExtractorConfig{
			APIKeyHeaders:    o.APIKeyHeaders,
			APIKeyPrefixes:   o.APIKeyPrefixes,
			RequireSignature: o.RequireSignature,
			CookieNames:      betterauth.SessionCookieNames(o.CookiePrefix, o.CookieName),
			CookiePrefix:     o.CookiePrefix,
			OAuth:            o.OAuth != nil,
			OAuthPrefix:      oauthPrefix(o.OAuth),
		},
		Realm:          o.Realm,
		KeepCredential: o.KeepCredential,
		Rules:          rules,
		Shield:         sh,
		Meter:          m,
		KeyAllowedIPs:  o.APIKeyAllowedIPsField != "",
		OnKeyIPProblem: kp.heard,
		Limiter:        lim,
		Observer:       observer,
		OnError: func(c betterauth.Credential, err error) {
			logger.Error("better-auth lookup failed; answering 503",
				zap.String("credential_fingerprint", betterauth.Fingerprint(c.Value)), zap.Error(err))
		},
	}), nil
}

// watchers are the goroutines that tell the cache about revocations: the
// other gateways over the shared Redis, and unless turned off, the
// PostgreSQL listener and the secondary storage's keyspace events. Each
// of them forgets everything cached when it (re)connects: what changed
// while it was not listening is unknown.
func (g *Gateway) watchers(ctx context.Context, cfg assembly, logger *zap.Logger) []func() {
	var ws []func()
	if g.bus != nil && g.cache.Shared() {
		ws = append(ws, func() { g.relay(ctx, logger) })
	}
	if cfg.NoListener {
		return ws
	}
	if g.db.Dialect() == store.Postgres {
		targets := map[string]cache.Target{"apikey": cache.TargetAPIKey, "session": cache.TargetSession, "user": cache.TargetUser,
			"organization": cache.TargetOrg, "oauth_token": cache.TargetOAuthToken, "oauth_client": cache.TargetOAuthClient,
			"oauth_resource": cache.TargetOAuth}
		pool, _ := g.db.(interface{ ResetConnections() })
		reconnected := false
		ws = append(ws, func() {
			pgstore.Listen(ctx, pgstore.ListenOptions{
				DSN:    cfg.Database,
				Logger: logger.Named("revocations"),
				OnReset: func() {
					// The listener lost its connection: the pooled ones,
					// to the same server, may be as dead (silently, each
					// would cost a lookup its timeout) and are dialed anew.
					if reconnected && pool != nil {
						pool.ResetConnections()
					}
					reconnected = true
					g.cache.Purge(ctx)
					if g.counter != nil {
						// What changed while nobody listened is unknown:
						// every key counted in Redis is read again.
						if err := g.counter.ReseedAll(ctx); err != nil {
							logger.Warn("marking every API key's usage to be read again failed", zap.Error(err))
						}
					}
				},
				OnInvalidate: func(inv pgstore.Invalidation) {
					if target, ok := targets[inv.Kind]; ok && inv.ID != "" {
						g.metrics.Revoked(metrics.SourceTrigger, 1, 0)
						g.revoker.add(cache.Revocation{Target: target, ID: inv.ID}, true)
					}
					if inv.Kind == "member" && inv.UserID != "" {
						g.metrics.Revoked(metrics.SourceTrigger, 1, 0)
						// A membership changed: the sessions of its user (by
						// user is coarser than by membership, and enough).
						g.revoker.add(cache.Revocation{Target: cache.TargetUser, ID: inv.UserID}, true)
					}
					if g.counter != nil && (inv.Kind == "apikey" || inv.Kind == "apikey_usage") && inv.ID != "" {
						// The row changed outside the gateways: count from it again.
						if err := g.counter.Reseed(ctx, inv.ID); err != nil {
							logger.Warn("marking an API key's usage to be read again failed", zap.Error(err))
						}
					}
				},
			})
		})
	}
	if client, ok := g.secondary.(redis.UniversalClient); ok {
		prefix := *cfg.Secondary.Store.Prefix // set by WithDefaults
		ws = append(ws, func() {
			secondary.Watch(ctx, client, secondary.WatchOptions{
				Prefix: prefix, PlainKeys: cfg.PlainKeys, Logger: logger.Named("secondary_storage"),
				Ready: func() { g.cache.Purge(ctx) },
				Forget: func(d [32]byte) {
					g.metrics.Revoked(metrics.SourceKeyspace, 1, 0)
					g.revoker.add(cache.Revocation{Target: cache.TargetCredential, Digest: d}, true)
				},
				ForgetUser: func(id string) {
					g.metrics.Revoked(metrics.SourceKeyspace, 1, 0)
					g.revoker.add(cache.Revocation{Target: cache.TargetUser, ID: id}, true)
				},
			})
		})
	}
	return ws
}

// apply carries out one batch of revocations: the cache (here and shared),
// the open streams they concern, and, for those heard here, the other
// gateways.
func (g *Gateway) apply(ctx context.Context, revs []cache.Revocation, relay []cache.Revocation) {
	at := time.Now()
	n, epoch := g.cache.Revoke(ctx, revs...)
	g.endStreams(revs)
	if c := g.logger.Check(zapcore.DebugLevel, "revoked"); c != nil {
		c.Write(zap.Int("revocations", len(revs)), zap.Int("entries", n), zap.Uint64("shared_epoch", epoch))
	}
	if len(relay) > 0 && g.bus != nil {
		g.publish(ctx, busMessage{From: g.instance, Epoch: epoch, At: at.UnixMilli(), Revs: wireRevs(relay)})
	}
}

func (g *Gateway) endStreams(revs []cache.Revocation) {
	for _, r := range revs {
		switch r.Target {
		case cache.TargetAPIKey, cache.TargetSession, cache.TargetUser, cache.TargetOrg,
			cache.TargetOAuthToken, cache.TargetOAuthClient, cache.TargetOAuth:
			g.streams.Revoked(r.Target, r.ID)
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

// oauthPrefix is the opaque-token prefix of an oauth block, if any.
func oauthPrefix(a *OAuth) string {
	if a == nil {
		return ""
	}
	return a.OpaqueTokenPrefix
}

// jwtStore puts the verification of JWT access tokens over inner: with
// keys from the jwks table, or from a JWKS URL. The route's audience
// policy decides on the audience (betterauth.OAuthPolicy), so the verifier
// takes any.
func jwtStore(inner betterauth.Store, db store.DB, j *jwtAssembly, logger *zap.Logger) (betterauth.Store, error) {
	var keys oauth.KeySource
	if j.JWKSURL != "" {
		u, err := oauth.NewJWKSURL(oauth.JWKSURLConfig{URL: j.JWKSURL})
		if err != nil {
			return nil, err
		}
		keys = u
	} else {
		c, err := oauth.NewCachedKeys(oauth.CachedKeysConfig{Source: oauth.KeyFunc(db.JWK), All: db.JWKs})
		if err != nil {
			return nil, err
		}
		keys = c
	}
	v, err := oauth.NewAccessTokenVerifier(oauth.AccessTokenConfig{Keys: keys, Issuers: j.Issuers, AllowUnbound: true})
	if err != nil {
		return nil, err
	}
	logger.Debug("verifying JWT access tokens", zap.Strings("issuers", j.Issuers), zap.Bool("jwks_url", j.JWKSURL != ""))
	return oauth.NewStore(inner, db, v), nil
}

// countMeter counts the decisions of m, a meter of mode, in set.
func countMeter(m betterauth.Meter, mode string, set *metrics.Set) betterauth.Meter {
	if set == nil {
		return m
	}
	return countedMeter{m, mode, set}
}

type countedMeter struct {
	betterauth.Meter
	mode string
	set  *metrics.Set
}

func (m countedMeter) Use(ctx context.Context, k *betterauth.APIKey) (betterauth.Usage, error) {
	u, err := m.Meter.Use(ctx, k)
	m.set.Used(m.mode, u.Reason, err)
	return u, err
}

// countedLimiter counts a route's rate-limit decisions.
type countedLimiter struct {
	betterauth.Limiter
	set *metrics.Set
}

func (l countedLimiter) Limit(ctx context.Context, d betterauth.Decision, client netip.Addr) (time.Duration, bool) {
	wait, limited := l.Limiter.Limit(ctx, d, client)
	l.set.Limited(limited)
	return wait, limited
}
