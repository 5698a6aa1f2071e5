package caddyauth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	t.Parallel()
	d := caddyfile.NewTestDispenser(`better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		require_signature
		api_key_header x-api-key api-key
		api_key_prefix ba_ gw_
		api_key_config_id default org
		api_key_config org {
			references organization
		}
		api_key_config default {
			rate_limit off
		}
		usage redis {
			better_auth_version 1.6.12
			flush_interval 500ms
		}
		oauth {
			resource https://mcp.example.com/mcp
			issuer https://app.example.com/api/auth
			scopes openid tools:read
			allow_unbound_tokens
			opaque_token_prefix mcp_at_
			jwks_url https://app.example.com/api/auth/jwks
		}
		require_org_role owner admin
		require_scope tools:read
		audit denials {
			database table ops.audit
			queue 500
		}
		disable_key_hashing
		cookie_prefix myapp
		cookie_name sid
		keep_credential
		disable_metrics
		realm mcp
		lookup_timeout 2s
		schema {
			pg_schema auth
			naming snake
			table user users
			table api_key api_keys
			use_plural
			api_key_owner user_id
			column user.email email_address
			column apikey.key hashed_key
		}
		cache {
			ttl 10s
			api_key_ttl 20s
			session_ttl 5s
			jitter 0.25
			stale_while_revalidate 3s
			stale_if_error 1m
			negative_ttl off
			max_entries 500
			max_negative 50
		}
		secondary_storage {env.APP_REDIS_URL} {
			prefix ""
			sessions storage_then_database
			api_keys storage
			timeout 2s
		}
		redis {env.REDIS_URL} {
			prefix gw:
			timeout 50ms
			sentinel_master mymaster
			key {env.CACHE_KEY}
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Handler{Options: gateway.Options{
		Database: "{env.DATABASE_URL}", Secret: "{env.BETTER_AUTH_SECRET}", RequireSignature: true,
		APIKeyHeaders: []string{"x-api-key", "api-key"}, APIKeyPrefixes: []string{"ba_", "gw_"},
		APIKeyConfigIDs: []string{"default", "org"}, DisableKeyHashing: true,
		APIKeyConfigs: map[string]gateway.APIKeyConfig{"org": {References: "organization"}, "default": {RateLimitEnabled: new(bool)}},
		Usage:         &gateway.Usage{Mode: "redis", BetterAuthVersion: "1.6.12", FlushInterval: gateway.Duration(5e8)},
		OAuth: &gateway.OAuth{Resource: "https://mcp.example.com/mcp", Issuers: []string{"https://app.example.com/api/auth"},
			Scopes: []string{"openid", "tools:read"}, AllowUnboundTokens: true, OpaqueTokenPrefix: "mcp_at_",
			JWKSURL: "https://app.example.com/api/auth/jwks"}, RequireOrgRole: []string{"owner", "admin"}, RequireScope: []string{"tools:read"},
		Audit:        &gateway.Audit{Events: "denials", Database: &gateway.AuditDatabase{Table: "ops.audit", Queue: 500}},
		CookiePrefix: "myapp", CookieName: "sid",
		KeepCredential: true, DisableMetrics: true, Realm: "mcp", LookupTimeout: gateway.Duration(2e9),
		Schema: &gateway.Schema{PGSchema: "auth", Naming: "snake", UserTable: "users", APIKeyTable: "api_keys", UsePlural: true,
			APIKeyOwner: "user_id", Columns: map[string]string{"user.email": "email_address", "apikey.key": "hashed_key"}},
		Cache: &gateway.Cache{TTL: gateway.Duration(10e9), APIKeyTTL: gateway.Duration(20e9), SessionTTL: gateway.Duration(5e9), Jitter: 0.25,
			StaleWhileRevalidate: gateway.Duration(3e9), StaleIfError: gateway.Duration(60e9), NegativeTTL: -1, MaxEntries: 500, MaxNegative: 50},
		Redis: &gateway.Redis{URL: "{env.REDIS_URL}", Prefix: "gw:", Timeout: gateway.Duration(50e6), SentinelMaster: "mymaster", Key: "{env.CACHE_KEY}"},
		SecondaryStorage: &gateway.SecondaryStorage{URL: "{env.APP_REDIS_URL}", Prefix: new(string), Sessions: "storage_then_database",
			APIKeys: "storage", Timeout: gateway.Duration(2e9)},
	}}
	got, _ := json.Marshal(h)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("got  %s\nwant %s", got, exp)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	t.Parallel()
	// Blocks are written on one line here and opened up by the loop.
	for input, want := range map[string]string{
		`better_auth extra`:                                                                         "wrong argument count",
		`better_auth { database a b }`:                                                              "wrong argument count",
		`better_auth { database a ; database b }`:                                                   "database already specified",
		`better_auth { bogus }`:                                                                     "unrecognized subdirective 'bogus'",
		`better_auth { lookup_timeout soon }`:                                                       "bad duration",
		`better_auth { lookup_timeout off }`:                                                        "bad duration",
		`better_auth { require_signature yes }`:                                                     "wrong argument count",
		`better_auth { api_key_header }`:                                                            "wrong argument count",
		`better_auth { schema { table account accounts } }`:                                         "table must be user, session or api_key",
		`better_auth { schema { column email x } }`:                                                 "column takes <model>.<field> <name>",
		`better_auth { schema { bogus } }`:                                                          "unrecognized schema subdirective",
		`better_auth { cache { max_entries -3 } }`:                                                  "positive whole number",
		`better_auth { cache { ttl 0s } }`:                                                          "duration must be positive",
		`better_auth { cache { jitter lots } }`:                                                     "jitter takes a fraction",
		`better_auth { cache { flavour vanilla } }`:                                                 "unrecognized cache subdirective",
		`better_auth { schema { table user a ; table user b } }`:                                    "table user already specified",
		`better_auth { redis }`:                                                                     "redis needs a url",
		`better_auth { require_permission files }`:                                                  "require_permission takes <resource> <action...>",
		`better_auth { require_permission files read ; require_permission files write }`:            "require_permission files already specified",
		`better_auth { secondary_storage }`:                                                         "secondary_storage needs a url",
		`better_auth { redis a b }`:                                                                 "wrong argument count",
		`better_auth { redis redis://x { url redis://y } }`:                                         "url already specified",
		`better_auth { redis { url redis://x ; bogus } }`:                                           "unrecognized redis subdirective",
		`better_auth { rate_limit { key user } }`:                                                   "wrong argument count",
		`better_auth { rate_limit a b { key user } }`:                                               "wrong argument count",
		`better_auth { rate_limit a { key user } }`:                                                 "needs a key and a rate",
		`better_auth { rate_limit a { key user ; rate 5 } }`:                                        "rate must be <n>/<duration>",
		`better_auth { rate_limit a { key user ; rate 5/soon } }`:                                   "duration must be positive",
		`better_auth { rate_limit a { key user ; rate 5/1m ; burst 0 } }`:                           "positive whole number",
		`better_auth { rate_limit a { key user ; rate 5/1m ; colour red } }`:                        "unrecognized rate_limit subdirective",
		`better_auth { rate_limit a { key user ; key ip ; rate 5/1m } }`:                            "key already specified",
		`better_auth { rate_limit a { key user ; rate 1/s } ; rate_limit a { key ip ; rate 1/s } }`: "rate_limit a already specified",
		`better_auth { usage database redis }`:                                                      "wrong argument count",
		`better_auth { usage database { colour red } }`:                                             "unrecognized usage subdirective",
		`better_auth { usage database { flush_interval soon } }`:                                    "bad duration",
		`better_auth { oauth { colour red } }`:                                                      "unrecognized oauth subdirective",
		`better_auth { oauth x { } }`:                                                               "wrong argument count",
		`better_auth { audit all off }`:                                                             "wrong argument count",
		`better_auth { audit { queue 5 } }`:                                                         "add database",
		`better_auth { audit { database at x } }`:                                                   "database takes table <name>",
		`better_auth { audit { colour red } }`:                                                      "unrecognized audit subdirective",
		`better_auth { api_key_config }`:                                                            "wrong argument count",
		`better_auth { api_key_config a { rate_limit maybe } }`:                                     "rate_limit takes on or off",
		`better_auth { api_key_config a { references organization } ; api_key_config a { } }`:       "api_key_config a already specified",
	} {
		var h Handler
		opened := strings.NewReplacer("{ ", "{\n", " }", "\n}", " ; ", "\n").Replace(input)
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(opened))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", input, err, want)
		}
	}
}

// Values the parser takes as written are refused when the config is
// validated, by the package that owns each: the same check as for JSON.
func TestCaddyfileValuesAreValidated(t *testing.T) {
	t.Parallel()
	for input, want := range map[string]string{
		`better_auth { schema { naming kebab } }`:                             "naming must be",
		`better_auth { schema { api_key_owner org } }`:                        "owner must be",
		`better_auth { schema { table user a ; table session a } }`:           "tables are both",
		`better_auth { cache { jitter 2 } }`:                                  "jitter must be a fraction",
		`better_auth { secondary_storage redis://x { sessions redis } }`:      "sessions must be",
		`better_auth { secondary_storage redis://x { api_keys everywhere } }`: "api_keys must be",
		`better_auth { api_key_header Authorization }`:                        "cannot carry API keys",
		`better_auth { rate_limit A { key user ; rate 1/s } }`:                "only a-z",
		`better_auth { rate_limit a { key tenant ; rate 1/s } }`:              "key must be api_key, user",
		`better_auth { rate_limit a { key user ; rate 10000000/1s } }`:        "at most one request per",
		`better_auth { audit everything }`:                                    "events must be all, denials or off",
		`better_auth { audit { database table "a;b" } }`:                      "names are letters, digits and underscores",
		`better_auth { audit { database ; queue 1000000000 } }`:               "queue must be between 0 and 1000000",
	} {
		var h Handler
		opened := strings.NewReplacer("{ ", "{\n", " }", "\n}", " ; ", "\n").Replace(input)
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(opened)); err != nil {
			t.Fatalf("%q: %v", input, err)
		}
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: Validate said %v, want %q", input, err, want)
		}
	}
}

// TestCaddyfileAdapt compares each testdata/*.caddyfiletest, a Caddyfile and
// the JSON it must adapt to separated by a line of dashes, as Caddy's own
// adapt tests do. An expectation that is not JSON is an error the adapt must
// report.
func TestCaddyfileAdapt(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no adapt tests")
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			got, _, err := adapter.Adapt([]byte(in), nil)
			want = strings.TrimSpace(want)
			if !strings.HasPrefix(want, "{") {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var gotV, wantV any
			json.Unmarshal(got, &gotV)
			if err := json.Unmarshal([]byte(want), &wantV); err != nil {
				t.Fatalf("expected JSON: %v", err)
			}
			g, _ := json.MarshalIndent(gotV, "", "\t")
			w, _ := json.MarshalIndent(wantV, "", "\t")
			if string(g) != string(w) {
				t.Errorf("adapted to\n%s\nwant\n%s", g, w)
			}
		})
	}
}
