package pgstore_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/pgstore"
	"github.com/caddy-betterauth/caddy-betterauth/schema"
)

// Allow-lists are read from the metadata column whatever type an ORM gave
// it (Better-Auth's text, or json and jsonb), and not at all when the
// option is off.
func TestAllowedIPsFromMetadata(t *testing.T) {
	t.Parallel()
	listed, other := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.1")
	for _, typ := range []string{"text", "json", "jsonb"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			db := testenv.NewDatabase(t)
			testenv.Exec(t, db, `CREATE TABLE "user" (id text PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE apikey (id text PRIMARY KEY, "configId" text NOT NULL DEFAULT 'default', "referenceId" text NOT NULL, key text NOT NULL,
  enabled boolean, "expiresAt" timestamptz, remaining integer, "refillInterval" integer, "refillAmount" integer,
  "lastRefillAt" timestamptz, "createdAt" timestamptz NOT NULL DEFAULT now(), permissions text, metadata `+typ+`);
INSERT INTO "user" VALUES ('u1', 'Alice', 'alice@example.com')`)
			keys := map[string]struct {
				metadata string // SQL
				want     string // "" unrestricted, "listed" or "closed"
			}{
				"restricted": {`'{"plan":"pro","allowedIps":["203.0.113.0/24"]}'`, "listed"},
				"malformed":  {`'{"allowedIps":["203.0.113.7","203.0.113.300"]}'`, "closed"},
				"other":      {`'{"plan":"pro"}'`, ""},
				"sqlnull":    {`NULL`, ""},
				"jsnull":     {`'null'`, ""},
				"legacy":     {`'"{\"allowedIps\":[\"203.0.113.0/24\"]}"'`, "listed"},
			}
			for id, k := range keys {
				testenv.Exec(t, db, `INSERT INTO apikey (id, "referenceId", key, enabled, metadata) VALUES ($1, 'u1', $2, true, `+k.metadata+`)`,
					id, betterauth.HashAPIKey("ba_"+id))
			}
			ctx := context.Background()
			for _, field := range []string{"allowedIps", ""} {
				store, err := pgstore.New(newPool(t, db, nil), pgstore.Options{Schema: schema.Config{AllowedIPsField: field}})
				if err != nil {
					t.Fatal(err)
				}
				q, err := store.Queries(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if reads := strings.Contains(q.APIKey, `k."metadata"`); reads != (field != "") {
					t.Fatalf("field %q: the query reads metadata: %v\n%s", field, reads, q.APIKey)
				}
				for id, k := range keys {
					rec, err := store.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, "ba_"+id))
					if err != nil || rec.APIKey == nil {
						t.Fatalf("%s: %+v, %v", id, rec, err)
					}
					l := rec.APIKey.AllowedIPs
					want := k.want
					if field == "" {
						want = ""
					}
					switch {
					case want == "" && l != nil:
						t.Errorf("%s (field %q): restricted: %+v", id, field, l)
					case want == "listed" && (l == nil || !l.Admits(listed) || l.Admits(other)):
						t.Errorf("%s: %+v", id, l)
					case want == "closed" && (l == nil || l.Problem == "" || l.Admits(listed)):
						t.Errorf("%s: %+v", id, l)
					}
				}
			}
		})
	}
}
