package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/gateway"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigFile(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://u@h/db", "BETTER_AUTH_SECRET": "s3cret", "REDIS_URL": "redis://r:6379", "APP": "redis://app"}
	path := writeConfig(t, `{
		"database": "{env.DATABASE_URL}",
		"api_key_prefixes": ["ba_"],
		"cache": {"ttl": "1h"},
		"redis": {"url": "{env.REDIS_URL}", "timeout": "50ms"},
		"secondary_storage": {"url": "{env.APP}", "sessions": "storage_then_database"},
		"schema": {"pg_schema": "auth"},
		"grpc": "127.0.0.1:7000"
	}`)
	cfg, err := load([]string{"-config", path, "-cache-ttl", "2m"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database != env["DATABASE_URL"] || cfg.Secret != "s3cret" || cfg.Redis.URL != "redis://r:6379" ||
		cfg.SecondaryStorage.URL != "redis://app" || cfg.SecondaryStorage.Sessions != "storage_then_database" ||
		cfg.Schema.PGSchema != "auth" || cfg.Redis.Timeout != gateway.Duration(50*time.Millisecond) {
		t.Fatalf("%+v", cfg)
	}
	// The file's listeners stand (http stays off); a flag set wins.
	if cfg.GRPC != "127.0.0.1:7000" || cfg.HTTP != "" || cfg.Cache.TTL != gateway.Duration(2*time.Minute) || cfg.APIKeyPrefixes[0] != "ba_" {
		t.Fatalf("listeners %+v, cache %+v", cfg.Listeners, cfg.Cache)
	}
}

func TestLoadFlagsOnly(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "sqlite:///tmp/x.db"}
	cfg, err := load([]string{"-api-key-prefix", "a_,b_", "-http", "", "-keep-credential"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database != env["DATABASE_URL"] || cfg.GRPC != "127.0.0.1:9191" || cfg.HTTP != "" || !cfg.KeepCredential ||
		strings.Join(cfg.APIKeyPrefixes, ",") != "a_,b_" || cfg.Secret != "" {
		t.Fatalf("%+v", cfg)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	none := func(string) string { return "" }
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no database":     {nil, "no database"},
		"unknown field":   {[]string{"-config", writeConfig(t, `{"database": "x", "bogus": 1}`)}, `unknown field "bogus"`},
		"bad duration":    {[]string{"-config", writeConfig(t, `{"database": "x", "lookup_timeout": "soon"}`)}, "duration"},
		"nothing served":  {[]string{"-config", writeConfig(t, `{"database": "x"}`)}, "nothing to serve"},
		"half of tls":     {[]string{"-config", writeConfig(t, `{"database": "x", "grpc": ":1", "tls_cert": "c.pem"}`)}, "certificate and a key"},
		"bad header name": {[]string{"-config", writeConfig(t, `{"database": "x", "grpc": ":1", "api_key_headers": ["Cookie"]}`)}, "cannot carry API keys"},
		"stray argument":  {[]string{"serve"}, "unexpected argument"},
		"missing file":    {[]string{"-config", "/nonexistent/gateway.json"}, "no such file"},
		// Caddy's json.Unmarshal refuses a second value; it must not be
		// ignored here either.
		"second value": {[]string{"-config", writeConfig(t, `{"database": "x", "grpc": ":1"} {"redis": {"url": "redis://r:6379"}}`)}, "after"},
		// Caddy reads {file.…} (a Docker secret, say); taken as text, a
		// secret would be its own name, and so would the key that seals
		// the shared Redis entries.
		"file placeholder in secret":    {[]string{"-config", writeConfig(t, `{"database": "x", "grpc": ":1", "secret": "{file./run/secrets/better_auth_secret}", "redis": {"url": "redis://r:6379"}}`)}, "{env.NAME}"},
		"file placeholder in redis key": {[]string{"-config", writeConfig(t, `{"database": "x", "grpc": ":1", "redis": {"url": "redis://r:6379", "key": "{file./run/secrets/better_auth_cache_key}"}}`)}, "{env.NAME}"},
		"other placeholder in database": {[]string{"-config", writeConfig(t, `{"database": "postgres://u@{env.HOST}/{system.hostname}", "grpc": ":1"}`)}, "{env.NAME}"},
	} {
		if _, err := load(tc.args, none, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
}
