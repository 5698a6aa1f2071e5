package gateway

import (
	"sync"

	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/internal/throttle"
)

// maxKeyProblems bounds the key ids remembered as logged; past it, further
// malformed lists are logged at most once per throttle.Every.
const maxKeyProblems = 10000

// keyProblems logs API keys refused because their allow-list
// (api_key_allowed_ips_field) is malformed: once per key, with its id and
// the problem, never the key.
type keyProblems struct {
	logger *zap.Logger
	mu     sync.Mutex
	seen   map[string]struct{}
	more   throttle.Log
}

func newKeyProblems(logger *zap.Logger) *keyProblems {
	return &keyProblems{logger: logger, seen: map[string]struct{}{}}
}

// heard is a Gate's OnKeyIPProblem.
func (k *keyProblems) heard(keyID, problem string) {
	k.mu.Lock()
	_, logged := k.seen[keyID]
	full := len(k.seen) >= maxKeyProblems
	if !logged && !full {
		k.seen[keyID] = struct{}{}
	}
	k.mu.Unlock()
	if logged {
		return
	}
	if full {
		if _, ok := k.more.Allow(); !ok {
			return
		}
	}
	k.logger.Warn("an API key's allow-list of client addresses is malformed: the key is refused from every address until its metadata is fixed",
		zap.String("api_key_id", keyID), zap.String("problem", problem))
}
