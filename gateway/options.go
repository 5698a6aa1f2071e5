package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
	"github.com/caddy-betterauth/caddy-betterauth/ratelimit"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
	"github.com/caddy-betterauth/caddy-betterauth/usage"
)

// Options are a gateway's settings: everything a better_auth block (the
// Caddy handler, or the better_auth app) says, in the same JSON, which the
// standalone ext_authz server reads too.
type Options struct {
	// Metrics, when set, counts what the gateway and its gates do;
	// FrontEnd names the gate's front end there (metrics.FrontCaddy,
	// metrics.FrontExtAuthz). Set by the front end, never from JSON, and
	// ignored in sharing (the first front end to open a gateway gives it
	// its Set: one per process).
	Metrics  *metrics.Set `json:"-"`
	FrontEnd string       `json:"-"`

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

	// What the database cannot say about an api-key plugin configuration,
	// keyed by configId ("default" for the default one): its references
	// and rateLimit settings. Configurations not listed take Better-Auth's
	// defaults. With references "organization", a key of that
	// configuration belongs to the organization its referenceId names: it
	// is read with the organization row (id, name, slug) in the same query,
	// sends X-Auth-Org-Id, X-Auth-Org-Slug and X-Auth-Org-Name and no
	// user headers, is unknown (INVALID_API_KEY) when the organization (or
	// the organization plugin's table) is missing, is never refused as
	// banned, and fails require_role (403 INSUFFICIENT_ROLE: it has no
	// user) and require_org_role (it has no active organization).
	APIKeyConfigs map[string]APIKeyConfig `json:"api_key_configs,omitempty"`

	// Count each API key's uses and enforce its quota (remaining, refills)
	// and rate limit as Better-Auth's verifyApiKey does. Default: off (keys
	// are checked, never counted).
	Usage *Usage `json:"usage,omitempty"`

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

	// Do not count this front end's decisions, nor register the metrics
	// families (in Caddy: on the config's registry). The gateway it shares
	// with others still counts its caches, lookups and revocations for
	// them. Default: counted.
	DisableMetrics bool `json:"disable_metrics,omitempty"`

	// The credential kinds this route accepts: "api_key", "session",
	// "oauth" (an OAuth access token, with the oauth block). A verified
	// credential of another kind gets 401 CREDENTIAL_NOT_ACCEPTED.
	// Default: all.
	Allow []string `json:"allow,omitempty"`

	// Roles of which the user must hold one, in Better-Auth's admin plugin
	// user.role (several are stored comma-separated; each is compared
	// exactly). Others get 403 INSUFFICIENT_ROLE. Default: none required.
	RequireRole []string `json:"require_role,omitempty"`

	// Roles of which the user must hold one in the session's active
	// organization: the organization plugin's member.role for
	// session.activeOrganizationId and the session's user (several are
	// stored comma-separated; each is compared exactly). Sessions without
	// an active organization, or whose user is no longer a member of it,
	// and API keys get 403 INSUFFICIENT_ORG_ROLE. Default: none required.
	RequireOrgRole []string `json:"require_org_role,omitempty"`

	// Permissions the API key must hold: resource → actions, as the api-key
	// plugin's permissions and verifyApiKey({permissions}) name them. Every
	// action on every resource is needed (exact strings; "*" is no
	// wildcard); sessions, which have no permissions, never pass. Others
	// get 403 INSUFFICIENT_PERMISSIONS. Default: none required.
	RequirePermission map[string][]string `json:"require_permission,omitempty"`

	// Scopes an OAuth access token must have been granted, every one of
	// them. A token short of one gets 403 with WWW-Authenticate: Bearer
	// error="insufficient_scope", scope="<all of them>", so that an MCP
	// client can ask for more; API keys and sessions, which hold no
	// scopes, get a plain 403 INSUFFICIENT_SCOPE. Default: none required.
	RequireScope []string `json:"require_scope,omitempty"`

	// Client addresses this route admits, as CIDR prefixes or single
	// addresses; deny_ip refuses some. Checked before the credential is
	// read (no database work for a refused client): 403 IP_NOT_ALLOWED.
	// The address is Caddy's client_ip (the peer, or what trusted_proxies
	// vouch for), Envoy's downstream address for ext_authz gRPC, and the
	// calling proxy itself in the HTTP mode. Default: any.
	AllowIP []string `json:"allow_ip,omitempty"`
	DenyIP  []string `json:"deny_ip,omitempty"`

	// The member of an API key's metadata that lists the client addresses
	// the key may be used from, e.g. "allowedIps" for keys the app created
	// with createApiKey({metadata: {allowedIps: ["10.0.0.0/8",
	// "203.0.113.7"]}}): CIDR prefixes or single addresses, at most 256. A
	// key whose metadata lacks the member is unrestricted; from another
	// address, or one the front end cannot tell, it gets 403
	// IP_NOT_ALLOWED. A member that is not a non-empty list of addresses
	// (or metadata that is not JSON) fails closed: the key is refused from
	// everywhere, and the problem is logged once with the key's id. The
	// address is the one allow_ip sees. Default: unset (metadata is not
	// read).
	APIKeyAllowedIPsField string `json:"api_key_allowed_ips_field,omitempty"`

	// Refuse, before any lookup, a client address that presented too many
	// unknown credentials. Off by default: behind a proxy that Caddy does
	// not trust (trusted_proxies), every client shares the proxy's address.
	BruteForce *BruteForce `json:"brute_force,omitempty"`

	// Rate limits on this route's requests, checked in the order written
	// once the credential is verified and the rules pass (a refused
	// request spends none): the first exhausted tier answers 429
	// RATE_LIMIT_EXCEEDED with Retry-After, and spends none of the others.
	// Independent of an API key's own Better-Auth rate limit. At most 8.
	// A tier's buckets are named by its name and key, not by route: routes
	// of one gateway with tiers of the same name and key share buckets
	// (each applying its own rate), and with a redis block so do all the
	// replicas on that Redis. Default: none.
	RateLimits []RateLimit `json:"rate_limits,omitempty"`

	// MCP authorization: the protected resource this route is (RFC 9728).
	// With it, 401 challenges name the resource's metadata, and the
	// Caddy handler serves that metadata itself, without a credential.
	OAuth *OAuth `json:"oauth,omitempty"`

	// Per-tool authorization for an MCP endpoint: which credentials may
	// use which tools, resources and prompts, list answers filtered to
	// them, sessions bound to their principal. See MCP.
	MCP *MCP `json:"mcp,omitempty"`

	// An audit trail of this route's decisions: one event each, with who
	// (user, organization, key, session or token id, OAuth client), the
	// decision and its code, the client address, host and path, the MCP
	// method and tool when read, and the credential's fingerprint; never
	// a secret. Logged on the logger http.handlers.better_auth.audit (the
	// app's: better_auth.audit), which Caddy's `log` can route to a file
	// of its own, and optionally written to the database. Default: none.
	Audit *Audit `json:"audit,omitempty"`

	// The realm in WWW-Authenticate challenges. Default: "better-auth".
	Realm string `json:"realm,omitempty"`

	// How long one database lookup may take before the request fails with
	// 503. Default: 3s.
	LookupTimeout Duration `json:"lookup_timeout,omitempty"`

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
	// For the Caddy handler, which proxies the request; ext_authz answers
	// before the response exists, so Envoy's own timeouts bound its streams.
	KeepRevokedStreams bool `json:"keep_revoked_streams,omitempty"`

	// A Redis shared by the gateway's replicas as a second cache level:
	// read when a record is not in memory, written after the database
	// answers. Optional; any Redis error or timeout falls through to the
	// database and never fails a request.
	Redis *Redis `json:"redis,omitempty"`
}

// Audit configures the audit trail.
type Audit struct {
	// Which decisions are recorded: "all", "denials" (every answer but a
	// pass: refusals and 503s) or "off". Default: all.
	Events string `json:"events,omitempty"`
	// Also write the events to a table of the gateway's database.
	Database *AuditDatabase `json:"database,omitempty"`
}

// MaxAuditQueue bounds AuditDatabase.Queue: the queue is allocated whole
// (about 300 bytes an event, and up to 5 KB with its text), and a slip of
// a digit must fail the config, not take the process down.
const MaxAuditQueue = 1_000_000

func (a *Audit) validate() error {
	if a == nil {
		return nil
	}
	if _, err := audit.ParseMode(a.Events); err != nil {
		return err
	}
	if d := a.Database; d != nil {
		if d.Queue < 0 || d.Queue > MaxAuditQueue {
			return fmt.Errorf("audit: queue must be between 0 and %d, not %d", MaxAuditQueue, d.Queue)
		}
		// The names PostgreSQL takes; SQLite's (no schema) are checked
		// when the database is known.
		if _, err := audit.ParseTable("", d.Table); err != nil {
			return err
		}
	}
	return nil
}

// AuditDatabase says where audit events are stored. The table is created
// by `caddy better-auth install-audit` (or the SQL it prints with
// --print). Events are written in batches (COPY on PostgreSQL) by a
// queue that never holds a request up, through a connection pool of
// their own; while the database cannot take them they wait in the queue,
// and past it they are dropped, counted in audit_events_total and logged
// at most every 10 s. Shutdown writes what is queued.
type AuditDatabase struct {
	// The table: [schema.]table on PostgreSQL, table on SQLite. Default:
	// caddy_betterauth.audit_events (PostgreSQL),
	// caddy_betterauth_audit_events (SQLite).
	Table string `json:"table,omitempty"`
	// How many events may wait for the database; routes writing to one
	// table with the same queue share it (a reload that changes it gets a
	// new one). Default: 10000; at most MaxAuditQueue.
	Queue int `json:"queue,omitempty"`
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
	TTL Duration `json:"ttl,omitempty"`
	// How long an unknown credential is remembered. Negative disables it.
	// Default: 5s.
	NegativeTTL Duration `json:"negative_ttl,omitempty"`
	// Replace ttl for API keys or for sessions.
	APIKeyTTL  Duration `json:"api_key_ttl,omitempty"`
	SessionTTL Duration `json:"session_ttl,omitempty"`
	// Shorten each entry's TTL by a random fraction up to this (0 to 1), so
	// that replicas do not reload a popular credential all at once.
	// Negative disables it. Default: 0.1.
	Jitter float64 `json:"jitter,omitempty"`
	// Serve an entry this long past its TTL while one background lookup
	// refreshes it. Widens the revocation bound without the triggers.
	// Default: 0 (off).
	StaleWhileRevalidate Duration `json:"stale_while_revalidate,omitempty"`
	// Serve an entry verified this long ago (past its TTL) when the database
	// cannot answer, instead of 503. Default: 0 (off: fail closed).
	StaleIfError Duration `json:"stale_if_error,omitempty"`
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
	Timeout Duration `json:"timeout,omitempty"`
}

// OAuth describes the MCP server as an OAuth protected resource.
type OAuth struct {
	// The resource identifier: exactly the URL MCP clients call, e.g.
	// https://mcp.example.com/mcp (https, or http on localhost). Its
	// metadata is served at /.well-known/oauth-protected-resource/mcp
	// (the well-known segment before the resource's path) and at
	// /.well-known/oauth-protected-resource. Placeholders are replaced
	// when the config loads. Required.
	Resource string `json:"resource,omitempty"`
	// The authorization servers' issuers: Better-Auth's OAuth provider
	// (its baseURL with the auth path, as its own metadata says).
	// Required.
	Issuers []string `json:"issuers,omitempty"`
	// The scopes the resource understands, listed in its metadata and
	// asked for in challenges (offline_access is left out).
	Scopes []string `json:"scopes,omitempty"`
	// Accept access tokens issued without an audience (RFC 8707
	// resource): every opaque token of Better-Auth's OAuth provider (it
	// gives opaque tokens none; clients that send resource get JWTs). A
	// token issued for another resource is refused all the same. Unsafe:
	// MCP forbids it, since a token any client of the provider obtained
	// without naming a resource is then accepted here. Default: off.
	AllowUnboundTokens bool `json:"allow_unbound_tokens,omitempty"`
	// Where the OAuth provider's signing keys are, to verify its JWT
	// access tokens: a JWKS URL (Better-Auth's <issuer>/jwks), fetched
	// on first use and again, at most every 30 s, for a key it does not
	// know. Default: Better-Auth's jwks table in the database, which
	// needs no network call.
	JWKSURL string `json:"jwks_url,omitempty"`
	// The OAuth provider's prefix.opaqueAccessToken, when it sets one:
	// bearer values starting with it are opaque access tokens, looked up
	// without it. Default: none (raw 32-character bearer values are
	// looked up as OAuth tokens beside API keys and sessions).
	OpaqueTokenPrefix string `json:"opaque_token_prefix,omitempty"`
}

// Protected is the resource the block describes, checked (placeholders
// replaced).
func (a *OAuth) Protected() (*oauth.Resource, error) {
	return oauth.NewResource(oauth.Resource{URL: a.Resource, AuthorizationServers: a.Issuers, Scopes: a.Scopes})
}

// APIKeyConfig is one api-key plugin configuration's settings the
// gateway cannot read from the database.
type APIKeyConfig struct {
	// The plugin's references option: "user" (the default), whose keys
	// belong to users, or "organization", whose keys belong to
	// organizations (apikey.referenceId is an organization id, resolved
	// to the organization plugin's organization row).
	References string `json:"references,omitempty"`
	// The plugin's rateLimit.enabled: false turns every key's rate limit
	// off, whatever its row says. Default: true, as in Better-Auth.
	RateLimitEnabled *bool `json:"rate_limit_enabled,omitempty"`
}

// Usage configures the counting of API-key uses.
type Usage struct {
	// Where uses are counted: "off", "database" (Better-Auth's own guarded
	// updates on the apikey row: exact alongside the app, one write per
	// request; SQLite is then opened read-write) or "redis" (atomic in
	// Redis, written back to the row behind). Default: "off".
	Mode string `json:"mode,omitempty"`
	// The Better-Auth release whose rules are followed (its rate-limit
	// answer and whether a rate-limited call spends remaining), e.g.
	// "1.6.12". Default: the newest rules, unless the table says otherwise.
	BetterAuthVersion string `json:"better_auth_version,omitempty"`
	// With mode redis: how often uses counted in Redis are written to the
	// rows, the staleness of the database's view (the app's dashboards).
	// Default: 1s.
	FlushInterval Duration `json:"flush_interval,omitempty"`
}

// BruteForce configures the shield against credential guessing. Unknown
// API keys and session tokens count against the client's address (the
// one address rules see); past failures within window, the address gets
// 429 TOO_MANY_FAILURES with Retry-After, for every request and without a
// database lookup, until failures are forgiven at a steady window/failures
// rate. One account per address is shared by every route of the gateway.
type BruteForce struct {
	// Unknown credentials an address may present within window. Required.
	Failures int `json:"failures,omitempty"`
	// Required.
	Window Duration `json:"window,omitempty"`
	// Bound on the addresses remembered; past it, the address closest to
	// being forgiven is forgotten first. Default: 100000.
	MaxClients int `json:"max_clients,omitempty"`
}

// RateLimit is one rate_limit tier: rate requests per window for each
// key, of which burst may come at once (GCRA: then one every
// window / rate). With a redis block the buckets live in Redis, each
// request checking all its tiers in one atomic script; should Redis fail or
// time out, each replica counts on its own until it answers (fail open to
// local limits: never a 503, never a pass of the authentication).
// Without one, each replica counts in process, in a bounded table.
type RateLimit struct {
	// The tier's name: 1 to 32 of a-z, 0-9, _ and -. Required.
	Name string `json:"name,omitempty"`
	// What the tier counts by: "api_key" (the credential: the API key's id,
	// or the session's id for a session), "user" (the user id),
	// "organization" (the organization the request acts for; skipped for a
	// request with none), "ip" (the client address, as allow_ip sees it:
	// an IPv4 address or an IPv6 /64; skipped when unknown) or "global"
	// (one bucket for all). Required.
	Key string `json:"key,omitempty"`
	// Requests allowed per window. Required.
	Rate int `json:"rate,omitempty"`
	// Required.
	Window Duration `json:"window,omitempty"`
	// Requests that may come at once. Default: rate.
	Burst int `json:"burst,omitempty"`
}

// tiers are the route's rate limits, checked.
func (o *Options) tiers() ([]ratelimit.Tier, error) {
	var ts []ratelimit.Tier
	for _, rl := range o.RateLimits {
		k, err := ratelimit.ParseKey(rl.Key)
		if err != nil {
			return nil, fmt.Errorf("rate_limit %s: %w", rl.Name, err)
		}
		ts = append(ts, ratelimit.Tier{Name: rl.Name, Key: k, Rate: rl.Rate, Per: time.Duration(rl.Window), Burst: rl.Burst})
	}
	return ts, ratelimit.ValidateTiers(ts)
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
	// address and of how it is read (disable_key_hashing,
	// secondary_storage), so that gateways for different databases, or
	// reading one differently, never share.
	Prefix string `json:"prefix,omitempty"`
	// Bound on each Redis call; a slower Redis is skipped. Default: 100ms.
	Timeout Duration `json:"timeout,omitempty"`
	// The key that authenticates shared entries and invalidation messages
	// (HMAC-SHA256 with a key derived from it), at least 32 characters,
	// the same on every replica. Default: derived from secret; one of the
	// two is required. Placeholders such as {env.CACHE_KEY} are replaced
	// when the config loads.
	Key string `json:"key,omitempty"`

	named bool // a key was written, even if its placeholder came out empty
}

// Duration is a time.Duration that JSON gives as nanoseconds or as a
// string such as "15s", "500ms" or "1d" (24h), as Caddy's durations are.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v time.Duration
	if len(b) > 1 && b[0] == '"' && b[len(b)-1] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		var err error
		if v, err = ParseDuration(s); err != nil {
			return err
		}
	} else if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a Go duration, with "d" for 24 hours.
func ParseDuration(s string) (time.Duration, error) {
	if len(s) > 1024 {
		return 0, errors.New("parsing duration: input string too long")
	}
	var b strings.Builder
	start := -1 // where the current number starts
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 'd' && start >= 0:
			days, err := strconv.ParseFloat(s[start:i], 64)
			if err != nil {
				return 0, fmt.Errorf("parsing duration %q: %w", s, err)
			}
			b.WriteString(strconv.FormatFloat(days*24, 'f', -1, 64) + "h")
			start = -1
			continue
		case '0' <= c && c <= '9' || c == '.' || c == '-' || c == '+':
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			b.WriteString(s[start:i])
			start = -1
		}
		b.WriteByte(c)
	}
	if start >= 0 {
		b.WriteString(s[start:])
	}
	return time.ParseDuration(b.String())
}

// Resolve returns a copy of o with the placeholders of the fields that
// take them (database, secret, the redis and secondary_storage URLs, the
// redis key) replaced by replace: Caddy's replacer in Caddy, environment
// variables in the standalone server (see ExpandEnv).
func (o Options) Resolve(replace func(string) string) Options {
	o.Database = replace(o.Database)
	o.Secret = replace(o.Secret)
	if o.OAuth != nil {
		a := *o.OAuth
		a.Resource, a.JWKSURL = replace(a.Resource), replace(a.JWKSURL)
		a.Issuers = slices.Clone(a.Issuers)
		for i := range a.Issuers {
			a.Issuers[i] = replace(a.Issuers[i])
		}
		o.OAuth = &a
	}
	if o.Redis != nil {
		r := *o.Redis
		r.named = r.named || r.Key != ""
		r.URL, r.Key = replace(r.URL), replace(r.Key)
		o.Redis = &r
	}
	if o.SecondaryStorage != nil {
		ss := *o.SecondaryStorage
		ss.URL = replace(ss.URL)
		o.SecondaryStorage = &ss
	}
	return o
}

// ExpandEnv replaces each {env.NAME} in s with the environment variable
// NAME (empty when unset), through getenv. Other braces stay.
func ExpandEnv(s string, getenv func(string) string) string {
	const open = "{env."
	var b strings.Builder
	for {
		i := strings.Index(s, open)
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			break
		}
		b.WriteString(s[:i])
		b.WriteString(getenv(s[i+len(open) : i+j]))
		s = s[i+j+1:]
	}
	if b.Len() == 0 {
		return s
	}
	b.WriteString(s)
	return b.String()
}

// Validate checks the settings as written (before placeholders are
// replaced), each by the package that owns it; it changes nothing and does
// no I/O.
func (o *Options) Validate() error {
	if o.LookupTimeout < 0 {
		return errors.New("lookup_timeout must not be negative")
	}
	if _, err := o.rules(); err != nil {
		return err
	}
	if _, err := o.tiers(); err != nil {
		return err
	}
	if err := o.Audit.validate(); err != nil {
		return err
	}
	if o.Schema != nil {
		if err := o.Schema.config().Validate(); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	if o.Cache != nil {
		if err := o.Cache.options(0).Validate(); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
	}
	if b := o.BruteForce; b != nil && (b.Failures <= 0 || b.Window <= 0 || b.MaxClients < 0) {
		return errors.New("brute_force: failures and window must be positive, max_clients not negative")
	}
	if o.Redis != nil && o.Redis.Timeout < 0 {
		return errors.New("redis: timeout must not be negative")
	}
	if ss := o.SecondaryStorage; ss != nil {
		if err := ss.options(false).Validate(); err != nil {
			return fmt.Errorf("secondary_storage: %w", err)
		}
		if ss.Timeout < 0 {
			return errors.New("secondary_storage: timeout must not be negative")
		}
	}
	if strings.ContainsFunc(o.Realm, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		// It goes in WWW-Authenticate as it is, to Envoy too.
		return fmt.Errorf("realm %q holds a control character", o.Realm)
	}
	if a := o.OAuth; a != nil && !strings.Contains(a.Resource+strings.Join(a.Issuers, "")+a.JWKSURL, "{") {
		// With placeholders, checked once they are replaced (Resource).
		if _, err := a.Protected(); err != nil {
			return err
		}
		if a.JWKSURL != "" {
			if _, err := oauth.NewJWKSURL(oauth.JWKSURLConfig{URL: a.JWKSURL}); err != nil {
				return fmt.Errorf("oauth: jwks_url: %w", err)
			}
		}
	}
	if o.MCP != nil {
		if err := o.MCP.validate(o.OAuth != nil); err != nil {
			return fmt.Errorf("mcp: %w", err)
		}
	}
	if o.OAuth == nil && (len(o.RequireScope) > 0 || slices.Contains(o.Allow, "oauth")) {
		return errors.New("require_scope and allow oauth are about OAuth access tokens, which are accepted only with an oauth block")
	}
	if a := o.OAuth; a != nil && strings.ContainsFunc(a.OpaqueTokenPrefix, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return fmt.Errorf("oauth: opaque_token_prefix %q holds a space or a character no bearer token has", a.OpaqueTokenPrefix)
	}
	for id, c := range o.APIKeyConfigs {
		switch c.References {
		case "", "user", "organization":
		default:
			return fmt.Errorf("api_key_configs: %s: references must be user or organization, not %q", id, c.References)
		}
	}
	if u := o.Usage; u != nil {
		switch u.Mode {
		case "", "off", "database":
		case "redis":
			if o.Redis == nil {
				return errors.New("usage: mode redis counts in the redis block's Redis, and there is none")
			}
		default:
			return fmt.Errorf("usage: mode must be off, database or redis, not %q", u.Mode)
		}
		if counting := u.Mode == "database" || u.Mode == "redis"; counting && o.SecondaryStorage != nil &&
			secondary.Mode(o.SecondaryStorage.APIKeys) == secondary.Storage {
			// Such keys have no row to count on; Better-Auth itself counts
			// them in storage, without atomicity.
			return errors.New("usage: counts on the apikey rows, and with secondary_storage api_keys storage keys have none; " +
				"use api_keys storage_then_database (the plugin's fallbackToDatabase) or usage off")
		}
		if u.FlushInterval < 0 {
			return errors.New("usage: flush_interval must not be negative")
		}
		if u.BetterAuthVersion != "" {
			if _, err := usage.ParseVersion(u.BetterAuthVersion); err != nil {
				return fmt.Errorf("usage: %w", err)
			}
		}
	}
	for _, p := range o.APIKeyPrefixes {
		if p == "" {
			return errors.New("api_key_prefixes: empty prefix")
		}
	}
	for _, name := range o.APIKeyHeaders {
		if betterauth.IsOwnedHeader(name) || strings.EqualFold(name, "Authorization") || strings.EqualFold(name, "Cookie") {
			return fmt.Errorf("api_key_headers: %q cannot carry API keys", name)
		}
	}
	return nil
}

// OrgConfigIDs are the api-key configurations whose references is
// "organization".
func (o *Options) OrgConfigIDs() []string {
	var ids []string
	for id, c := range o.APIKeyConfigs {
		if c.References == "organization" {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// rules are the route's requirements, checked.
func (o *Options) rules() (betterauth.Rules, error) {
	r := betterauth.Rules{Roles: o.RequireRole, OrgRoles: o.RequireOrgRole, Permissions: o.RequirePermission, Scopes: o.RequireScope}
	for _, list := range []struct {
		name string
		in   []string
		out  *[]netip.Prefix
	}{{"allow_ip", o.AllowIP, &r.AllowIPs}, {"deny_ip", o.DenyIP, &r.DenyIPs}} {
		for _, s := range list.in {
			p, err := betterauth.ParsePrefix(s)
			if err != nil {
				return r, fmt.Errorf("%s: %w", list.name, err)
			}
			*list.out = append(*list.out, p)
		}
	}
	for _, s := range o.Allow {
		m, err := betterauth.ParseMethod(s)
		if err != nil {
			return r, fmt.Errorf("allow: %w", err)
		}
		r.Methods = append(r.Methods, m)
	}
	return r, r.Validate()
}
