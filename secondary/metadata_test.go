package secondary_test

import (
	"context"
	"crypto/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
	"github.com/caddy-betterauth/caddy-betterauth/secondary"
)

// ownerOnly is SQL that knows one user and no key.
type ownerOnly struct{}

func (ownerOnly) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	return betterauth.Record{}, nil
}

func (ownerOnly) Owner(_ context.Context, id string) (*betterauth.User, *betterauth.Organization, error) {
	if id != "u1" {
		return nil, nil, nil
	}
	return &betterauth.User{ID: "u1", Email: "alice@example.com"}, nil, nil
}

func (ownerOnly) Member(context.Context, string, string) (string, bool, error) { return "", false, nil }

// A key record's metadata is an object (the plugin stores the record
// parsed); a string holding JSON text, null, or no member read too. It is
// not read without the option.
func TestAllowedIPsFromStoredKeys(t *testing.T) {
	t.Parallel()
	ropts, err := redis.ParseURL(testenv.Require(t, "TEST_REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(ropts)
	t.Cleanup(func() { client.Close() })
	prefix := "ba-" + strings.ToLower(rand.Text()[:8]) + ":"
	ctx := context.Background()
	keys := map[string]struct{ metadata, want string }{
		"object":    {`{"plan":"pro","allowedIps":["203.0.113.0/24"]}`, "listed"},
		"string":    {`"{\"allowedIps\":[\"203.0.113.0/24\"]}"`, "listed"},
		"malformed": {`{"allowedIps":"203.0.113.7"}`, "closed"},
		"other":     {`{"plan":"pro"}`, ""},
		"null":      {`null`, ""},
		"absent":    {``, ""},
	}
	for id, k := range keys {
		meta := ""
		if k.metadata != "" {
			meta = `,"metadata":` + k.metadata
		}
		rec := `{"id":"` + id + `","configId":"default","referenceId":"u1","enabled":true,"expiresAt":null,"createdAt":"2026-11-27T12:00:00.000Z"` + meta + `}`
		if err := client.Set(ctx, prefix+"api-key:"+betterauth.HashAPIKey("ba_"+id), rec, 0).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Del(context.Background(), prefix+"api-key:"+betterauth.HashAPIKey("ba_"+id)) })
	}
	listed, other := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.1")
	for _, field := range []string{"allowedIps", ""} {
		s, err := secondary.New(client, ownerOnly{}, secondary.Options{Prefix: &prefix, APIKeys: secondary.Storage, AllowedIPsField: field})
		if err != nil {
			t.Fatal(err)
		}
		for id, k := range keys {
			rec, err := s.Lookup(ctx, betterauth.NewLookup(betterauth.KindAPIKey, "ba_"+id))
			if err != nil || rec.APIKey == nil {
				t.Fatalf("%s: %+v %v", id, rec, err)
			}
			l, want := rec.APIKey.AllowedIPs, k.want
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
}
