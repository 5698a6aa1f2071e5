// The TestAttack* tests here reproduce attacks a review of the change
// found, each through what it attacked. Each failed before its fix and
// guards it now; their comments describe the attack and the flaw as they
// were found (the commits starting "attack:" hold them as they failed).

package cache

import (
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Every lookup kind a credential's digest is cached under must have a
// Redis name of its own: a record one kind of lookup found (an OAuth token
// found by a raw bearer value) must never answer another (the same value
// in X-Api-Key, or on a route without an oauth block). keyFor names the
// kind "?kse"[kind%4], so KindAPIKey|KindOAuth (9) is KindAPIKey's "k",
// KindSession|KindOAuth (10) KindSession's "s", KindEither|KindOAuth (11)
// KindEither's "e", and KindOAuth (8) and KindJWT (16) share "?".
func TestAttackSharedNamesDistinctPerKind(t *testing.T) {
	var d [32]byte
	d[0] = 42
	seen := map[string]betterauth.Kind{}
	for _, kind := range digestKinds {
		name := keyFor("p:v5:", keyOf(betterauth.Lookup{Kind: kind, Digest: d}))
		if other, ok := seen[name]; ok {
			t.Errorf("kinds %d and %d share the Redis name %q", other, kind, name)
		}
		seen[name] = kind
	}
}
