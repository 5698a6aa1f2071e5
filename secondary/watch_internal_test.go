package secondary

import (
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Whoever can write to the app's Redis chooses the keys the watcher hears
// of: a stored key of any other shape is ignored, never a crash.
func TestWatchIgnoresMalformedStoredKeys(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	var got [][32]byte
	opts := WatchOptions{Forget: func(d [32]byte) { got = append(got, d) }}
	for _, k := range []string{"api-key:" + strings.Repeat("A", 400), "api-key:" + key, "api-key:"} {
		handle(k, opts)
	}
	handle("api-key:"+betterauth.HashAPIKey(key), opts)
	opts.PlainKeys = true
	handle("api-key:"+key, opts)
	want := betterauth.NewLookup(betterauth.KindAPIKey, key).Digest
	if len(got) != 2 || got[0] != want || got[1] != want {
		t.Fatalf("forgot %x, want the key's digest twice", got)
	}
}
