// Package ratelimit enforces a route's rate_limit tiers: named limits on
// verified requests, each counted per credential, user, organization,
// client address or for everyone, with GCRA (one timestamp per bucket).
// The buckets live in a Store shared by every route of a gateway: in
// process (bounded, sharded) or, with a Redis, in Redis, where one script
// checks every tier of a request and spends them all or none.
package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key is what a tier counts by.
type Key uint8

// Keys.
const (
	// KeyCredential counts per API key, or per session for a session
	// (Decision.CredentialID); written api_key.
	KeyCredential Key = iota
	// KeyUser counts per user id.
	KeyUser
	// KeyOrganization counts per organization id; a request that carries
	// none skips the tier.
	KeyOrganization
	// KeyIP counts per client address: an IPv4 address, or an IPv6 /64.
	// A request whose address the front end cannot tell skips the tier.
	KeyIP
	// KeyGlobal is one bucket for every request.
	KeyGlobal
	numKeys
)

var keyNames = [numKeys]string{"api_key", "user", "organization", "ip", "global"}

// String returns the key as configurations write it.
func (k Key) String() string {
	if k >= numKeys {
		return "invalid"
	}
	return keyNames[k]
}

// ParseKey parses api_key, user, organization, ip or global.
func ParseKey(s string) (Key, error) {
	for i, n := range keyNames {
		if s == n {
			return Key(i), nil
		}
	}
	return 0, fmt.Errorf("key must be api_key, user, organization, ip or global, not %q", s)
}

// Limits on configurations.
const (
	// MaxTiers is the most tiers one route may have.
	MaxTiers = 8
	// MaxNameLen is the longest tier name.
	MaxNameLen = 32
	// MinInterval is the shortest time between requests a tier may
	// allow on average (the Redis script counts in microseconds).
	MinInterval = time.Microsecond
)

// Tier is one limit: Rate requests per Per, of which Burst may come at
// once; then one every Per/Rate.
type Tier struct {
	Name  string
	Key   Key
	Rate  int
	Per   time.Duration
	Burst int // default: Rate
}

// ParseRate parses "<n>/<duration>", such as 100/1m or 5/1s; a duration
// of one unit may drop its 1 (100/m). parseDuration parses the duration.
func ParseRate(s string, parseDuration func(string) (time.Duration, error)) (n int, per time.Duration, err error) {
	count, window, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate must be <n>/<duration>, such as 100/1m, not %q", s)
	}
	n, err = strconv.Atoi(count)
	if err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("rate %q: the count must be a positive whole number", s)
	}
	if window != "" && (window[0] < '0' || window[0] > '9') {
		window = "1" + window
	}
	per, err = parseDuration(window)
	if err != nil || per <= 0 {
		return 0, 0, fmt.Errorf("rate %q: the duration must be positive", s)
	}
	return n, per, nil
}

// Validate checks the tier.
func (t Tier) Validate() error {
	if err := ValidName(t.Name); err != nil {
		return err
	}
	if t.Key >= numKeys {
		return fmt.Errorf("rate_limit %s: invalid key", t.Name)
	}
	if t.Rate <= 0 || t.Per <= 0 {
		return fmt.Errorf("rate_limit %s: rate must be a positive count per positive duration", t.Name)
	}
	if t.Per/time.Duration(t.Rate) < MinInterval {
		return fmt.Errorf("rate_limit %s: at most one request per %v on average", t.Name, MinInterval)
	}
	if t.Burst < 0 || t.Burst > 1_000_000 {
		return fmt.Errorf("rate_limit %s: burst must be between 1 and 1000000", t.Name)
	}
	if lim := t.gcra(); lim.limit/lim.interval != int64(t.burst()) {
		return fmt.Errorf("rate_limit %s: rate and burst out of range", t.Name)
	}
	return nil
}

// ValidName checks a tier name: 1 to 32 of a-z, 0-9, _ and -.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("rate_limit name %q: 1 to %d characters", name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("rate_limit name %q: only a-z, 0-9, _ and -", name)
		}
	}
	return nil
}

// ValidateTiers checks a route's tiers: each valid, at most MaxTiers, no
// name twice.
func ValidateTiers(ts []Tier) error {
	if len(ts) > MaxTiers {
		return fmt.Errorf("rate_limit: at most %d tiers per route, not %d", MaxTiers, len(ts))
	}
	seen := map[string]bool{}
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("rate_limit %s: already specified", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

func (t Tier) burst() int {
	if t.Burst == 0 {
		return t.Rate
	}
	return t.Burst
}

// gcra is a tier's arithmetic, in nanoseconds: each request moves the
// bucket's theoretical arrival time (TAT) interval ahead; a request is
// allowed while that keeps the TAT within limit (burst × interval) of now.
type gcra struct {
	interval int64
	limit    int64
}

func (t Tier) gcra() gcra {
	interval := int64(t.Per / time.Duration(t.Rate))
	// Whole microseconds, as Redis counts them, so both stores agree.
	interval -= interval % int64(time.Microsecond)
	return gcra{interval: interval, limit: interval * int64(t.burst())}
}

// take returns the bucket's new TAT if one request at now fits, or how
// long until it would.
func (g gcra) take(tat, now int64) (next, wait int64, ok bool) {
	if tat < now {
		tat = now
	}
	if tat > now+g.limit {
		// Only a TAT written by someone else runs that far: cap it.
		tat = now + g.limit
	}
	next = tat + g.interval
	if over := next - now - g.limit; over > 0 {
		return tat, over, false
	}
	return next, 0, true
}
