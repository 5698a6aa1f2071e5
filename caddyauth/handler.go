// Package caddyauth is the Caddy front end of caddy-betterauth: the HTTP
// handler http.handlers.better_auth and its Caddyfile directive better_auth.
//
// Import it (or build with xcaddy) to register the module:
//
//	import _ "github.com/caddy-betterauth/caddy-betterauth/caddyauth"
package caddyauth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler authenticates every request against the Better-Auth tables of an
// application's database, the way Better-Auth itself would, before handing
// it on (typically to reverse_proxy).
//
// It reads exactly one credential, in this order: an API-key header
// (x-api-key), an `Authorization: Bearer` value (an API key, or a signed or
// raw session token), or Better-Auth's session cookie. Denied requests get a
// JSON answer `{"code": ..., "message": ...}` with status 401, 403 or 429,
// and a database that cannot answer gives 503 with Retry-After; none of them
// reaches the next handler.
//
// On every request, whatever the outcome, it first removes every incoming
// header whose name starts with X-Auth- (any case, '_' for '-'). An allowed
// request then carries X-Auth-User-Id, X-Auth-User-Email, X-Auth-User-Name,
// X-Auth-User-Role (with Better-Auth's admin plugin), X-Auth-Method
// ("api_key" or "session") and X-Auth-Key-Id or X-Auth-Session-Id, with
// values percent-encoded where they are not printable ASCII; and, unless
// keep_credential is set, the credential it used is removed.
//
// It sets these placeholders on an allowed request:
//
//	{http.auth.user.id}          the user id (Caddy's access log shows it as user_id)
//	{http.auth.user.email}
//	{http.auth.user.name}
//	{http.auth.user.role}
//	{http.auth.user.method}      api_key or session
//	{http.auth.user.key_id}
//	{http.auth.user.session_id}
//
// and on a denied one {http.auth.better_auth.code}, the deny code.
type Handler struct {
	// The Better-Auth database: a PostgreSQL URL
	// (postgres://user:pass@host:5432/db) or a SQLite file
	// (sqlite:///var/lib/app/auth.db, or file:auth.db), which is opened
	// read-only so the app can keep writing it. pgx pool settings go in the
	// PostgreSQL URL, for example `pool_max_conns=20`, or
	// `default_query_exec_mode=exec` behind PgBouncer in transaction mode.
	// A SQLite URL may set max_conns (sqlite:///path/auth.db?max_conns=8):
	// the most connections, each a file descriptor, the gateway opens on the
	// file. Default: max(4, GOMAXPROCS).
	// Placeholders such as {env.DATABASE_URL} are replaced when the config
	// loads, so the secret never appears in the adapted config. Required.
	Database string `json:"database,omitempty"`

	// Better-Auth's secret (BETTER_AUTH_SECRET; with rotation, the first
	// secret), used to check signed session tokens and cookies. Without it
	// only raw session tokens in bearer headers can verify. Placeholders are
	// replaced when the config loads.
	Secret string `json:"secret,omitempty"`

	// Reject raw, unsigned session tokens in Authorization headers, as
	// Better-Auth's bearer({requireSignature: true}) does. Default: false.
	RequireSignature bool `json:"require_signature,omitempty"`

	// Headers that carry an API key, tried in order before Authorization.
	// Default: ["x-api-key"], Better-Auth's apiKeyHeaders default.
	APIKeyHeaders []string `json:"api_key_headers,omitempty"`

	// Prefixes of the application's API keys (the api-key plugin's
	// defaultPrefix or per-key prefix). A bearer value that starts with one is
	// looked up as a key only; without prefixes, a bearer value shaped like a
	// raw session token is looked up as both, still in one round trip.
	APIKeyPrefixes []string `json:"api_key_prefixes,omitempty"`

	// The api-key plugin configurations (configId) whose keys are accepted.
	// NULL, "" and "default" all name the default configuration.
	// Default: ["default"].
	APIKeyConfigIDs []string `json:"api_key_config_ids,omitempty"`

	// Set when the api-key plugin runs with disableKeyHashing, so that
	// apikey.key holds keys in plain text. Default: false.
	DisableKeyHashing bool `json:"disable_key_hashing,omitempty"`

	// Better-Auth's advanced.cookiePrefix. The session cookie is
	// `<prefix>.session_token`, also read with the `__Secure-` prefix.
	// Default: "better-auth".
	CookiePrefix string `json:"cookie_prefix,omitempty"`

	// Better-Auth's advanced.cookies.session_token.name, replacing
	// `<prefix>.session_token`. Default: unset.
	CookieName string `json:"cookie_name,omitempty"`

	// Forward the credential upstream. By default the API-key header, the
	// Authorization header or the session cookies (leaving other cookies) are
	// removed, since MCP forbids passing a client's token through.
	KeepCredential bool `json:"keep_credential,omitempty"`

	// The realm in WWW-Authenticate challenges. Default: "better-auth".
	Realm string `json:"realm,omitempty"`

	// How long one database lookup may take before the request fails with
	// 503. Default: 3s.
	LookupTimeout caddy.Duration `json:"lookup_timeout,omitempty"`

	// Where the Better-Auth tables are and how they are named.
	// Default: Better-Auth's own migrations in the search_path.
	Schema *Schema `json:"schema,omitempty"`

	// The in-process cache of verified records.
	Cache *Cache `json:"cache,omitempty"`

	// Turn off the revocation listeners. By default the gateway holds one
	// PostgreSQL connection that LISTENs for the notifications the triggers
	// of `caddy better-auth install-triggers` send (and, with
	// secondary_storage, follows its Redis keyspace events), and drops a
	// revoked key, session or user's records at once; the cache TTL stays
	// the backstop. Without the triggers it simply never hears anything. A
	// gateway with a shared redis still hears the other gateways.
	NoRevocationListener bool `json:"no_revocation_listener,omitempty"`

	// Where the Better-Auth app keeps sessions (and, with the api-key
	// plugin's storage: "secondary-storage", API keys) in Redis through its
	// secondaryStorage option. Owners of keys kept there are read from SQL;
	// a session kept there carries its user (and ban) in the stored blob.
	SecondaryStorage *SecondaryStorage `json:"secondary_storage,omitempty"`

	// Leave open the streams (server-sent events, WebSockets) whose
	// credential expires or is revoked. By default every allowed request is
	// tied to its credential, since any response may turn out to stream: it
	// ends when the key or session expires, and, with the revocation
	// triggers installed, within moments of a revocation or ban (the
	// credential is checked again first, since not every change revokes).
	KeepRevokedStreams bool `json:"keep_revoked_streams,omitempty"`

	// A Redis shared by the gateway's replicas as a second cache level:
	// read when a record is not in memory, written after the database
	// answers. Optional; any Redis error or timeout falls through to the
	// database and never fails a request.
	Redis *Redis `json:"redis,omitempty"`

	backendKey string
	streams    *streams // nil: streams are not watched
	extractor  *betterauth.Extractor
	verifier   *betterauth.Verifier
	answers    *betterauth.Answers
	logger     *zap.Logger
}

// Schema describes the Better-Auth tables. Whatever is left unset is
// detected from the database's catalog on first use (never at load):
// camelCase or snake_case columns, singular or plural table names, the
// api-key owner column, and whether the admin plugin's columns exist.
type Schema struct {
	// The PostgreSQL schema holding the tables. Default: the connection's
	// current schema (the first of its search_path).
	PGSchema string `json:"pg_schema,omitempty"`
	// "camel" for Better-Auth's migrations and Prisma ("expiresAt"), "snake"
	// for Drizzle's generator (expires_at). Default: detected.
	Naming string `json:"naming,omitempty"`
	// Table names (Better-Auth's modelName). Default: detected among user
	// and users, session and sessions, apikey and apikeys.
	UserTable    string `json:"user_table,omitempty"`
	SessionTable string `json:"session_table,omitempty"`
	APIKeyTable  string `json:"api_key_table,omitempty"`
	// Only consider plural table names, as the adapters' usePlural does.
	UsePlural bool `json:"use_plural,omitempty"`
	// The api-key owner column: "reference_id" for @better-auth/api-key 1.5+,
	// "user_id" for the plugin built into better-auth 1.3 and 1.4 (whose
	// table has no configId). Default: detected.
	APIKeyOwner string `json:"api_key_owner,omitempty"`
	// Single column names that differ, keyed "<model>.<field>" with
	// Better-Auth's names, e.g. {"user.email": "email_address"}.
	Columns map[string]string `json:"columns,omitempty"`
}

// Cache configures the in-process cache.
type Cache struct {
	// How long a verified record is served from memory: the longest a key
	// deleted or disabled in Better-Auth keeps working. A record's own expiry
	// caps it. Expiry, enabled and bans are re-checked on every hit.
	// Negative disables the cache. Default: 15s.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// How long an unknown credential is remembered. Negative disables it.
	// Default: 5s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
	// Replace ttl for API keys or for sessions.
	APIKeyTTL  caddy.Duration `json:"api_key_ttl,omitempty"`
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`
	// Shorten each entry's TTL by a random fraction up to this (0 to 1), so
	// that replicas do not reload a popular credential all at once.
	// Negative disables it. Default: 0.1.
	Jitter float64 `json:"jitter,omitempty"`
	// Serve an entry this long past its TTL while one background lookup
	// refreshes it. Widens the revocation bound without the triggers.
	// Default: 0 (off).
	StaleWhileRevalidate caddy.Duration `json:"stale_while_revalidate,omitempty"`
	// Serve an entry verified this long ago (past its TTL) when the database
	// cannot answer, instead of 503. Default: 0 (off: fail closed).
	StaleIfError caddy.Duration `json:"stale_if_error,omitempty"`
	// Bound on cached records. Default: 100000.
	MaxEntries int `json:"max_entries,omitempty"`
	// Bound on remembered unknown credentials, kept apart so that a flood of
	// bad keys cannot evict good ones. Default: 10000.
	MaxNegative int `json:"max_negative,omitempty"`
}

// SecondaryStorage says how to read the app's Better-Auth secondary storage.
type SecondaryStorage struct {
	// The app's Redis: redis://[user:pass@]host:port[/db] or rediss://.
	// Placeholders are replaced when the config loads. Required.
	URL string `json:"url,omitempty"`
	// The storage's key prefix. Default: "better-auth:", as
	// @better-auth/redis-storage writes; "" for a hand-written storage
	// without one.
	Prefix *string `json:"prefix,omitempty"`
	// Where sessions are read: "storage" (secondaryStorage alone, or with
	// preserveSessionInDatabase), "storage_then_database" (with
	// storeSessionInDatabase) or "database". Default: "storage".
	Sessions string `json:"sessions,omitempty"`
	// Where API keys are read: "database" (the plugin's default),
	// "storage" (storage: "secondary-storage") or "storage_then_database"
	// (with fallbackToDatabase). Default: "database".
	APIKeys string `json:"api_keys,omitempty"`
	// Bound on each Redis call. This Redis is a source of truth: a failure
	// answers 503. Default: 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// Redis configures the shared cache.
type Redis struct {
	// redis://[user:pass@]host:port[/db], or rediss:// for TLS; cluster
	// nodes as more addr parameters (?addr=host2:6379). Placeholders are
	// replaced when the config loads. Required.
	URL string `json:"url,omitempty"`
	// Treat the URL's hosts as Sentinels of this master.
	SentinelMaster string `json:"sentinel_master,omitempty"`
	// Starts every key. Gateways share entries when their prefixes match.
	// Default: "caddy-betterauth:" and a short hash of the database's
	// address, so that gateways for different databases never share.
	Prefix string `json:"prefix,omitempty"`
	// Bound on each Redis call; a slower Redis is skipped. Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// The key that authenticates shared entries and invalidation messages
	// (HMAC-SHA256 with a key derived from it), at least 32 characters,
	// the same on every replica. Default: derived from secret; one of the
	// two is required. Placeholders such as {env.CACHE_KEY} are replaced
	// when the config loads.
	Key string `json:"key,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.better_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets the handler up. It does no network I/O: the database pool
// connects on first use and is shared with every handler configured alike.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	cfg := backendConfig{
		Database:   repl.ReplaceAll(h.Database, ""),
		PlainKeys:  h.DisableKeyHashing,
		Timeout:    time.Duration(h.LookupTimeout),
		NoListener: h.NoRevocationListener,
	}
	if cfg.Database == "" {
		return errors.New("database is required (is its environment variable set?)")
	}
	if h.Schema != nil {
		cfg.Schema = *h.Schema
	}
	if h.Cache != nil {
		cfg.Cache = *h.Cache
	}
	if h.SecondaryStorage != nil {
		ss := *h.SecondaryStorage
		if ss.URL = repl.ReplaceAll(ss.URL, ""); ss.URL == "" {
			return errors.New("secondary_storage: url is required (is its environment variable set?)")
		}
		if ss.Sessions == "" {
			ss.Sessions = string(secondary.Storage)
		}
		cfg.Secondary = &ss
	}
	secret := repl.ReplaceAll(h.Secret, "")
	if h.Redis != nil {
		r := *h.Redis
		if r.URL = repl.ReplaceAll(r.URL, ""); r.URL == "" {
			return errors.New("redis: url is required (is its environment variable set?)")
		}
		// Shared entries are sealed with a key only the gateways hold:
		// Redis itself is not trusted. A key of the redis block is mixed
		// with the secret, so that apps deployed from one template with one
		// cache key but their own secrets never share entries.
		source := secret
		if r.Key != "" {
			key := repl.ReplaceAll(r.Key, "")
			if len(key) < cache.MinSharedKeyLen {
				return fmt.Errorf("redis: key must be at least %d characters (is its environment variable set?)", cache.MinSharedKeyLen)
			}
			source = key + "\x00" + secret
		}
		if source == "" {
			return errors.New("redis: shared entries must be authenticated, and there is no key to do it with: " +
				"set secret (BETTER_AUTH_SECRET), or give the redis block a key of its own (key {env.CACHE_KEY})")
		}
		sealer, err := cache.NewSealer(source)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		fp := sealer.Fingerprint()
		r.Key = hex.EncodeToString(fp[:]) // what the pool key hashes: never the key itself
		cfg.Redis, cfg.sealer = &r, sealer
	}
	b, key, err := loadBackend(cfg, h.logger)
	if err != nil {
		return err
	}
	h.backendKey = key
	if !h.KeepRevokedStreams {
		h.streams = b.streams
	}

	if err := h.setup(b.store, secret); err != nil {
		return err
	}
	h.warnAboutAccessLogs(ctx)
	return nil
}

// setup builds the request-time state over a store; Provision calls it with
// the shared backend, tests with a fake.
func (h *Handler) setup(store betterauth.Store, secret string) error {
	switch {
	case secret == "":
		h.logger.Warn("no secret: signed session tokens and session cookies will be rejected; set secret to BETTER_AUTH_SECRET")
	case len(secret) < 32:
		h.logger.Warn("the secret is shorter than the 32 characters Better-Auth asks for")
	}
	var err error
	h.verifier, err = betterauth.NewVerifier(betterauth.Options{Store: store, Secret: secret, ConfigIDs: h.APIKeyConfigIDs})
	if err != nil {
		return err
	}
	cookieNames := betterauth.SessionCookieNames(h.CookiePrefix, h.CookieName)
	h.extractor = betterauth.NewExtractor(betterauth.ExtractorConfig{
		APIKeyHeaders:    h.APIKeyHeaders,
		APIKeyPrefixes:   h.APIKeyPrefixes,
		RequireSignature: h.RequireSignature,
		CookieNames:      cookieNames,
		CookiePrefix:     h.CookiePrefix,
	})
	h.answers = betterauth.NewAnswers(h.Realm)
	return nil
}

// warnAboutAccessLogs tells the operator, once at load, when an access log
// may record the API key: Caddy copies each request for its logs before any
// handler runs and redacts only Authorization, Cookie, Set-Cookie and
// Proxy-Authorization.
func (h *Handler) warnAboutAccessLogs(ctx caddy.Context) {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || srv.Logs == nil {
		return
	}
	if srv.Logs.ShouldLogCredentials {
		h.logger.Warn("log_credentials is on: access logs will contain API keys and session tokens in clear text")
	}
	var filters []string
	for _, name := range h.extractor.APIKeyHeaders() {
		filters = append(filters, "request>headers>"+name+" delete")
	}
	h.logger.Warn("access logging is on for this server: Caddy records request headers before any handler runs, "+
		"so API keys reach the access log unless its format filter deletes them (nothing to do if it already does)",
		zap.String("add_to_the_log_directive", "format filter { "+strings.Join(filters, "; ")+" }"))
}

// Validate checks the configuration; it changes nothing.
func (h *Handler) Validate() error {
	if h.LookupTimeout < 0 {
		return errors.New("lookup_timeout must not be negative")
	}
	for _, p := range h.APIKeyPrefixes {
		if p == "" {
			return errors.New("api_key_prefixes: empty prefix")
		}
	}
	for _, name := range h.APIKeyHeaders {
		if betterauth.IsOwnedHeader(name) || strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "Cookie") {
			return fmt.Errorf("api_key_headers: %q cannot carry API keys", name)
		}
	}
	return nil
}

// Cleanup releases the shared backend.
func (h *Handler) Cleanup() error {
	if h.backendKey == "" {
		return nil
	}
	_, err := backends.Delete(h.backendKey)
	return err
}

// ServeHTTP authenticates r and, when allowed, passes it to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripOwnedHeaders(r.Header)
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	cred := h.extractor.Extract(betterauth.HTTPHeader(r.Header))
	d, err := h.verifier.Verify(r.Context(), cred)
	if err != nil && r.Context().Err() != nil {
		// The client went away while its lookup was in flight (the lookup
		// itself goes on for the requests sharing it): nobody to answer.
		if c := h.logger.Check(zapcore.DebugLevel, "client left during lookup"); c != nil {
			c.Write(zap.Error(r.Context().Err()))
		}
		return nil
	}
	if err != nil {
		h.logger.Error("better-auth lookup failed; answering 503",
			zap.String("credential_fingerprint", betterauth.Fingerprint(cred.Value)),
			zap.Error(err))
		return h.deny(w, repl, betterauth.Decision{Reason: betterauth.BackendUnavailable})
	}
	if !d.Allowed() {
		if c := h.logger.Check(zapcore.DebugLevel, "request denied"); c != nil {
			c.Write(zap.Stringer("code", d.Reason), zap.String("credential_fingerprint", betterauth.Fingerprint(cred.Value)))
		}
		return h.deny(w, repl, d)
	}

	var buf [betterauth.MaxHeaders]betterauth.Header
	hs := d.AppendHeaders(buf[:0])
	vals := make([]string, len(hs)) // one allocation for every header value
	for i, hd := range hs {
		vals[i] = hd.Value
		r.Header[hd.Name] = vals[i : i+1 : i+1]
	}
	if repl != nil {
		repl.Map(placeholders(d))
	}
	if !h.KeepCredential {
		h.extractor.RemoveCredentials(betterauth.HTTPHeader(r.Header))
	}
	h.protect(r)
	if h.streams != nil {
		var st *stream
		r, st = h.watch(r, cred, d)
		defer st.release()
	}
	err = next.ServeHTTP(w, r)
	if why := streamCut(r); why != nil {
		// The response was already streaming: end it, and say why in the log.
		if c := h.logger.Check(zapcore.InfoLevel, "closed a stream"); c != nil {
			c.Write(zap.String("reason", why.Error()), zap.String("user_id", d.User.ID))
		}
		return nil
	}
	if err != nil && cred.Source == betterauth.SourceAPIKeyHeader {
		return h.containError(w, r, err)
	}
	return err
}

// placeholders serves {http.auth.user.*} from the decision, without
// allocating a value per placeholder up front.
func placeholders(d betterauth.Decision) caddy.ReplacerFunc {
	return func(key string) (any, bool) {
		field, ok := strings.CutPrefix(key, "http.auth.user.")
		if !ok {
			return nil, false
		}
		id, email, name, role := d.User.HeaderValues()
		switch field {
		case "id":
			return id, true
		case "email":
			return email, true
		case "name":
			return name, true
		case "role":
			return role, true
		case "method":
			return d.Method.String(), true
		case "key_id":
			if d.Method == betterauth.MethodAPIKey {
				return d.CredentialHeader(), true
			}
		case "session_id":
			if d.Method == betterauth.MethodSession {
				return d.CredentialHeader(), true
			}
		}
		return nil, false
	}
}

// stripOwnedHeaders removes every header the gateway owns, in any spelling.
func stripOwnedHeaders(h http.Header) {
	for name := range h {
		if betterauth.IsOwnedHeader(name) {
			delete(h, name)
		}
	}
}

// protect keeps the client from shaping what reaches the upstream beside
// the identity headers: a Connection header naming them would make
// reverse_proxy delete them after they were set, and request trailers
// arrive after this handler has run. Both lose every protected name.
func (h *Handler) protect(r *http.Request) {
	if vs := r.Header["Connection"]; len(vs) > 0 {
		if rest, changed := h.extractor.FilterConnection(vs); changed {
			if rest == "" {
				delete(r.Header, "Connection")
			} else {
				r.Header["Connection"] = []string{rest}
			}
		}
	}
	if r.Trailer != nil && r.Body != nil && r.Body != http.NoBody {
		// Declared trailers share this map with the server, which fills in
		// their values when the body reaches EOF: scrub them then, before
		// reverse_proxy copies them.
		h.scrubTrailers(r.Trailer)
		r.Body = &trailerScrubber{ReadCloser: r.Body, trailer: r.Trailer, scrub: h.scrubTrailers}
	}
}

func (h *Handler) scrubTrailers(t http.Header) {
	for name := range t {
		if h.extractor.Protected(name) {
			delete(t, name)
		}
	}
}

// trailerScrubber removes protected trailers as the body ends.
type trailerScrubber struct {
	io.ReadCloser
	trailer http.Header
	scrub   func(http.Header)
}

func (b *trailerScrubber) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.scrub(b.trailer)
	}
	return n, err
}

// containError keeps a failing upstream from putting the API key in Caddy's
// error log. Caddy logs the copy of the request it took before any handler
// ran, headers included, at error level for 5xx; only Authorization and
// Cookie are redacted there. Without handle_errors routes the handler answers
// with the error's status itself and logs the error without the request
// headers. With handle_errors, Caddy logs at debug level and the error goes
// to those routes as usual.
func (h *Handler) containError(w http.ResponseWriter, r *http.Request, err error) error {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv != nil &&
		srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return err
	}
	status := http.StatusInternalServerError
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		status = he.StatusCode
	}
	lvl := zapcore.DebugLevel
	if status >= 500 {
		lvl = zapcore.ErrorLevel
	}
	if c := h.logger.Check(lvl, "next handler failed"); c != nil {
		c.Write(zap.Int("status", status), zap.String("method", r.Method), zap.String("host", r.Host),
			zap.String("uri", r.RequestURI), zap.String("remote_addr", r.RemoteAddr), zap.Error(err))
	}
	w.WriteHeader(status)
	return nil
}

// deny writes the answer to a denied request.
func (h *Handler) deny(w http.ResponseWriter, repl *caddy.Replacer, d betterauth.Decision) error {
	if repl != nil {
		repl.Set("http.auth.better_auth.code", d.Reason.String())
	}
	status, headers, body := h.answers.For(d)
	hdr := w.Header()
	for _, hd := range headers {
		hdr.Set(hd.Name, hd.Value)
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	// A failed write means the client left; returning it would only make
	// Caddy log the request, headers included.
	_, _ = w.Write(body)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
