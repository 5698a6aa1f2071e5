package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		`"15s"`: 15 * time.Second, `"1d"`: 24 * time.Hour, `"1.5d2h"`: 38 * time.Hour, `"500ms"`: 500 * time.Millisecond,
		`3000000000`: 3 * time.Second, `"-1s"`: -time.Second,
	} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{`"soon"`, `"d"`, `true`, `"1x"`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
	// It marshals as Caddy's does: nanoseconds.
	if b, _ := json.Marshal(Duration(2 * time.Second)); string(b) != "2000000000" {
		t.Errorf("marshalled as %s", b)
	}
}

func TestExpandEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DB": "postgres://u@h/db", "K": "k"}
	getenv := func(k string) string { return env[k] }
	for in, want := range map[string]string{
		"{env.DB}":                "postgres://u@h/db",
		"x{env.K}y{env.K}z":       "xkykz",
		"{env.UNSET}":             "",
		"{env.UNSET}tail":         "tail",
		"no placeholders":         "no placeholders",
		"{http.request.host}":     "{http.request.host}",
		"{env.DB":                 "{env.DB",
		"redis://{env.K}@host/{}": "redis://k@host/{}",
	} {
		if got := ExpandEnv(in, getenv); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// Resolve replaces placeholders in a copy: the written options (which
// Caddy shows in its adapted config) keep them.
func TestResolveCopies(t *testing.T) {
	t.Parallel()
	o := Options{Database: "{env.DB}", Secret: "{env.S}", Realm: "{env.DB}",
		Redis: &Redis{URL: "{env.R}", Key: "{env.K}"}, SecondaryStorage: &SecondaryStorage{URL: "{env.R}"}}
	r := o.Resolve(func(s string) string { return strings.ToUpper(s) })
	if r.Database != "{ENV.DB}" || r.Secret != "{ENV.S}" || r.Redis.URL != "{ENV.R}" || r.Redis.Key != "{ENV.K}" ||
		r.SecondaryStorage.URL != "{ENV.R}" || r.Realm != "{env.DB}" {
		t.Fatalf("resolved %+v %+v %+v", r, r.Redis, r.SecondaryStorage)
	}
	if o.Database != "{env.DB}" || o.Redis.URL != "{env.R}" || o.SecondaryStorage.URL != "{env.R}" {
		t.Fatal("Resolve changed the written options")
	}
}

// Front ends share a gateway when what shapes it is equal, and never
// otherwise; the sharing key never carries a secret.
func TestSharingKey(t *testing.T) {
	t.Parallel()
	const db = "postgres://u:hunter2@h/db"
	key := func(o Options) string {
		t.Helper()
		k, err := SharingKey(o)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(k, "hunter2") {
			t.Fatal("the sharing key holds the password")
		}
		return k
	}
	base := key(Options{Database: db, Secret: "s"})
	if key(Options{Database: db, Secret: "s", Realm: "other", KeepCredential: true, APIKeyPrefixes: []string{"x_"}}) != base {
		t.Error("gate settings split the gateway")
	}
	for name, o := range map[string]Options{
		"database":    {Database: db + "2", Secret: "s"},
		"plain keys":  {Database: db, DisableKeyHashing: true},
		"cache":       {Database: db, Cache: &Cache{TTL: Duration(time.Hour)}},
		"listener":    {Database: db, NoRevocationListener: true},
		"allow-lists": {Database: db, APIKeyAllowedIPsField: "allowedIps"},
		"redis":       {Database: db, Secret: "s", Redis: &Redis{URL: "redis://h"}},
	} {
		if key(o) == base {
			t.Errorf("%s: shares the gateway", name)
		}
	}
	a := key(Options{Database: db, Secret: "a", Redis: &Redis{URL: "redis://h"}})
	if b := key(Options{Database: db, Secret: "b", Redis: &Redis{URL: "redis://h"}}); a == b {
		t.Error("gateways sealing with different secrets share")
	}
	if _, err := SharingKey(Options{}); err == nil || !strings.Contains(err.Error(), "database is required") {
		t.Errorf("no database: %v", err)
	}
}

// Usage settings are checked when the config loads.
func TestUsageOptions(t *testing.T) {
	t.Parallel()
	storage := "storage"
	for _, tc := range []struct {
		name string
		o    Options
		bad  string
	}{
		{"database", Options{Usage: &Usage{Mode: "database"}}, ""},
		{"off with anything", Options{Usage: &Usage{Mode: "off"}, SecondaryStorage: &SecondaryStorage{APIKeys: storage}}, ""},
		{"a version", Options{Usage: &Usage{Mode: "database", BetterAuthVersion: "1.6.12"}}, ""},
		{"an unknown mode", Options{Usage: &Usage{Mode: "memory"}}, "mode must be"},
		{"redis without a redis block", Options{Usage: &Usage{Mode: "redis"}}, "no"},
		{"redis with one", Options{Usage: &Usage{Mode: "redis"}, Redis: &Redis{URL: "redis://x"}}, ""},
		{"a version that is not one", Options{Usage: &Usage{Mode: "database", BetterAuthVersion: "latest"}}, "not a release"},
		{"keys only in storage", Options{Usage: &Usage{Mode: "database"}, SecondaryStorage: &SecondaryStorage{URL: "redis://x", APIKeys: storage}},
			"have none"},
		{"keys in storage then the database", Options{Usage: &Usage{Mode: "database"},
			SecondaryStorage: &SecondaryStorage{URL: "redis://x", APIKeys: "storage_then_database"}}, ""},
		{"a negative flush interval", Options{Usage: &Usage{Mode: "redis", FlushInterval: -1}, Redis: &Redis{URL: "redis://x"}}, "negative"},
		{"an unknown reference", Options{APIKeyConfigs: map[string]APIKeyConfig{"x": {References: "team"}}}, "references"},
		{"a realm with a line break", Options{Realm: "mcp\r\nX-Injected: 1"}, "control character"},
	} {
		err := tc.o.Validate()
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.bad)
		}
	}
}

// OAuth settings are checked when the config loads.
func TestOAuthOptions(t *testing.T) {
	t.Parallel()
	block := func(edit func(*OAuth)) *OAuth {
		a := &OAuth{Resource: "https://mcp.example.com/mcp", Issuers: []string{"https://app.example.com/api/auth"}}
		edit(a)
		return a
	}
	for _, tc := range []struct {
		name string
		o    Options
		bad  string
	}{
		{"a block", Options{OAuth: block(func(*OAuth) {}), RequireScope: []string{"mcp:read"}, Allow: []string{"oauth"}}, ""},
		{"require_scope without a block", Options{RequireScope: []string{"mcp:read"}}, "only with an oauth block"},
		{"allow oauth without a block", Options{Allow: []string{"oauth"}}, "only with an oauth block"},
		{"a scope that cannot be quoted", Options{OAuth: block(func(*OAuth) {}), RequireScope: []string{`a"b`}}, "not a scope"},
		{"a prefix with a space", Options{OAuth: block(func(a *OAuth) { a.OpaqueTokenPrefix = "at " })}, "opaque_token_prefix"},
		{"a jwks_url over plain http", Options{OAuth: block(func(a *OAuth) { a.JWKSURL = "http://app.example.com/api/auth/jwks" })}, "must be https"},
		{"a jwks_url on loopback", Options{OAuth: block(func(a *OAuth) { a.JWKSURL = "http://127.0.0.1:3000/api/auth/jwks" })}, ""},
	} {
		err := tc.o.Validate()
		if err == nil {
			_, err = tc.o.rules() // the route's rules, checked as the gate is built
		}
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.bad)
		}
	}
}
