package gateway

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

type noStore struct{}

func (noStore) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	return betterauth.Record{}, nil
}

// A malformed allow-list is logged once per key, with the key's id and the
// problem.
func TestKeyProblemsLoggedOncePerKey(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	k := newKeyProblems(zap.New(core))
	for range 3 {
		k.heard("k1", "metadata.allowedIps is empty")
		k.heard("k2", "metadata.allowedIps[0]: bad")
	}
	if logs.Len() != 2 {
		t.Fatalf("%d lines, want 2", logs.Len())
	}
	if f := logs.All()[0].ContextMap(); f["api_key_id"] != "k1" || !strings.Contains(f["problem"].(string), "empty") {
		t.Fatalf("%v", f)
	}
	// Past the bound, at most one line per interval.
	for i := range maxKeyProblems + 10 {
		k.heard(strings.Repeat("x", i%7)+string(rune('a'+i%26))+strings.Repeat("y", i/26), "p")
	}
	if n := logs.Len(); n > maxKeyProblems+1 {
		t.Fatalf("%d lines past the bound", n)
	}
}

// The option makes the gate ask front ends for the client address.
func TestAllowedIPsFieldAsksForTheClient(t *testing.T) {
	t.Parallel()
	for field, want := range map[string]bool{"": false, "allowedIps": true} {
		g, err := NewGate(Options{Database: "sqlite:x.db", APIKeyAllowedIPsField: field}, noStore{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if g.WantsClient() != want {
			t.Errorf("field %q: WantsClient %v", field, !want)
		}
	}
}
