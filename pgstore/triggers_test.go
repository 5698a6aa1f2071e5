package pgstore

import (
	"os"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

const (
	triggersHeader = `-- Revocation triggers for Better-Auth's default PostgreSQL schema (its own
-- migrations: "user", "session", "apikey" with camelCase columns). They NOTIFY
-- the gateways on channel caddy_betterauth with a row's kind, id and user id
-- after every update or delete (of api keys, not updates of their usage
-- columns alone, which Better-Auth writes on every verify). Idempotent. The
-- organization plugin's and the OAuth provider's tables are watched when
-- install-triggers finds them.
-- For other layouts, let the gateway write them: caddy better-auth
-- install-triggers [--print].
`
	untriggersHeader = `-- Removes the revocation triggers of triggers.sql.
`
)

func defaultLayout(t *testing.T) *schema.Layout {
	t.Helper()
	l, err := schema.Config{}.Resolve(schema.Catalog{
		"user":    {"id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt"},
		"session": {"id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId"},
		"apikey": {"id", "configId", "name", "start", "referenceId", "prefix", "key", "refillInterval", "refillAmount", "lastRefillAt",
			"enabled", "rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "requestCount", "remaining", "lastRequest", "expiresAt",
			"createdAt", "updatedAt", "permissions", "metadata"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The shipped files are what install-triggers runs on the default schema.
func TestShippedTriggerFilesAreCurrent(t *testing.T) {
	t.Parallel()
	in, un := Triggers(defaultLayout(t), "")
	for file, want := range map[string]string{"triggers.sql": triggersHeader + in, "untriggers.sql": untriggersHeader + un} {
		got, err := os.ReadFile(file)
		if err != nil || string(got) != want {
			t.Errorf("%s is out of date with pgstore.Triggers (%v); regenerate it", file, err)
		}
	}
}
