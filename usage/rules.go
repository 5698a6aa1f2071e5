// Package usage counts API-key uses the way Better-Auth's api-key plugin
// does in verifyApiKey: the quota (remaining, and its refills) and the
// per-key rate limit (rateLimitMax requests per rateLimitTimeWindow), read
// and written on the apikey row itself, so that the app and any number of
// gateways verifying the same keys stay exact together.
//
// Rules.Plan is the one statement of Better-Auth's rules, for every release
// family; Database applies it to the row under the row's lock.
package usage

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Row is the usage state of one apikey row, as read.
type Row struct {
	// Remaining is the quota left; HasRemaining is false for NULL
	// (unlimited).
	Remaining    int64
	HasRemaining bool
	// RefillInterval is in milliseconds (0 for NULL); RefillAmount is
	// valid when HasRefillAmount.
	RefillInterval  int64
	RefillAmount    int64
	HasRefillAmount bool
	// LastRefillAt and LastRequest are zero for NULL.
	LastRefillAt time.Time
	CreatedAt    time.Time
	// RateLimitOff is true only when rateLimitEnabled is false: NULL counts
	// as enabled, as in Better-Auth.
	RateLimitOff bool
	// Window (rateLimitTimeWindow, ms) and Max (rateLimitMax) apply only
	// when both are set.
	Window       int64
	HasWindow    bool
	Max          int64
	HasMax       bool
	RequestCount int64 // NULL reads as 0
	LastRequest  time.Time
	// Applied is the last write of uses counted in Redis that the row
	// holds (Flush.Token; 0 for none); read by ReadUsage only.
	Applied int64
}

// Columns is a set of the usage columns a use writes.
type Columns uint8

// The usage columns.
const (
	ColRemaining Columns = 1 << iota
	ColLastRefillAt
	ColRequestCount
	ColLastRequest
	ColUpdatedAt
)

// Write is what one use changes on the row: the columns in Set, to the
// values beside them. An empty Set writes nothing.
type Write struct {
	Set          Columns
	Remaining    int64
	LastRefillAt time.Time
	RequestCount int64
	LastRequest  time.Time
	UpdatedAt    time.Time
}

// Family is a group of Better-Auth releases that count alike.
type Family uint8

// Release families.
const (
	// Current is @better-auth/api-key 1.6.17 and later: guarded per-field
	// updates; a rate-limited call answers 429 and has already spent one
	// remaining.
	Current Family = iota
	// Spare429 is 1.6.11 to 1.6.16: 429, and a rate-limited call spends
	// nothing.
	Spare429
	// Legacy is 1.6.10 and earlier, and the plugin built into better-auth
	// 1.3 and 1.4: 401, and a rate-limited call spends nothing.
	Legacy
)

// String names the family for logs and messages.
func (f Family) String() string {
	switch f {
	case Current:
		return "1.6.17+"
	case Spare429:
		return "1.6.11-1.6.16"
	case Legacy:
		return "<=1.6.10"
	}
	return "Family(" + strconv.Itoa(int(f)) + ")"
}

// ParseVersion returns the family of a Better-Auth release ("1.6.12",
// "v1.4.3", "1.7"): the version of @better-auth/api-key, or of better-auth
// for the plugin built into 1.3 and 1.4.
func ParseVersion(v string) (Family, error) {
	s := strings.TrimPrefix(strings.TrimSpace(v), "v")
	s, _, _ = strings.Cut(s, "-") // pre-release tags count as their release
	parts := strings.Split(s, ".")
	var n [3]int
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("better_auth_version %q is not a release such as 1.6.12", v)
	}
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return 0, fmt.Errorf("better_auth_version %q is not a release such as 1.6.12", v)
		}
		n[i] = x
	}
	if len(parts) == 2 {
		n[2] = 1 << 30 // "1.6" means the newest 1.6 release
	}
	switch {
	case n[0] < 1 || n[0] == 1 && n[1] < 3:
		return 0, fmt.Errorf("better_auth_version %q: releases before 1.3 are not supported", v)
	case n[0] > 1 || n[1] > 6 || n[1] == 6 && n[2] >= 17:
		return Current, nil
	case n[1] == 6 && n[2] >= 11:
		return Spare429, nil
	}
	return Legacy, nil
}

// Rules are what decides how a key's uses count beside its row.
type Rules struct {
	Family Family
	// RateLimitOff is the plugin's rateLimit.enabled set to false: no key
	// of its configuration is rate limited.
	RateLimitOff bool
}

// Plan decides one use of a key whose row reads row, at now, as
// verifyApiKey would after its other checks passed, and says what to
// write. Times are taken at millisecond precision, as JavaScript's Date
// holds them: Better-Auth's own compare-and-swap on lastRefillAt must still
// match what the gateway writes.
func (r Rules) Plan(row Row, now time.Time) (betterauth.Usage, Write) {
	now = time.UnixMilli(now.UnixMilli()).UTC()
	nowMs := now.UnixMilli()
	var u betterauth.Usage
	var w Write

	refills := row.RefillInterval != 0 && row.HasRefillAmount && row.RefillAmount != 0
	lastRefill := row.LastRefillAt
	if lastRefill.IsZero() {
		lastRefill = row.CreatedAt
	}
	remaining := row.Remaining
	if row.HasRemaining {
		switch {
		case remaining == 0 && !row.HasRefillAmount:
			// Better-Auth deletes such a key here; the gateway leaves the
			// row to the app and refuses it.
			u.Reason = betterauth.UsageExceeded
		case refills && nowMs-lastRefill.UnixMilli() > row.RefillInterval:
			remaining, lastRefill = row.RefillAmount-1, now
			w.Set |= ColRemaining | ColLastRefillAt
			w.LastRefillAt = now
		case remaining > 0:
			remaining--
			w.Set |= ColRemaining
		default:
			u.Reason = betterauth.UsageExceeded
		}
		w.Remaining = remaining
		u.Remaining, u.HasRemaining = remaining, true
		if refills {
			u.RefillAmount = row.RefillAmount
			u.RefillInterval = time.Duration(row.RefillInterval) * time.Millisecond
			u.RefillIn = max(0, lastRefill.Add(u.RefillInterval).Sub(now))
		}
		if u.Reason != betterauth.Allowed {
			u.RetryAfter = u.RefillIn
			return u, Write{}
		}
	}

	switch {
	case r.RateLimitOff || row.RateLimitOff:
		w.Set |= ColLastRequest
		w.LastRequest = now
	case !row.HasWindow || !row.HasMax:
	default:
		u.Limit, u.Window = row.Max, time.Duration(row.Window)*time.Millisecond
		since := nowMs - row.LastRequest.UnixMilli()
		switch {
		case row.LastRequest.IsZero() || since > row.Window:
			w.Set |= ColRequestCount | ColLastRequest
			w.RequestCount, w.LastRequest = 1, now
		case row.RequestCount >= row.Max:
			u.Reason = betterauth.RateLimited
			u.RetryAfter = time.Duration(row.Window-since) * time.Millisecond
			u.Left, u.Reset = 0, u.RetryAfter
			switch r.Family {
			case Current:
				// The quota was claimed before the rate limit was read.
				w.Set &= ColRemaining | ColLastRefillAt
				return u, w
			case Legacy:
				u.Reason = betterauth.RateLimitedUnauthorized
			}
			u.Remaining = row.Remaining
			if u.RefillAmount > 0 {
				last := row.LastRefillAt
				if last.IsZero() {
					last = row.CreatedAt
				}
				u.RefillIn = max(0, last.Add(u.RefillInterval).Sub(now))
			}
			return u, Write{}
		default:
			w.Set |= ColRequestCount | ColLastRequest
			w.RequestCount, w.LastRequest = row.RequestCount+1, now
		}
		u.Left, u.Reset = u.Limit-w.RequestCount, u.Window
	}
	w.Set |= ColUpdatedAt
	w.UpdatedAt = now
	return u, w
}
