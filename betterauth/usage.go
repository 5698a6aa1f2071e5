package betterauth

import (
	"context"
	"strconv"
	"time"
)

// Meter counts the uses of API keys and enforces their quota (remaining,
// refills) and rate limit, as Better-Auth's verifyApiKey does (package
// usage implements it over the database or Redis). The Gate asks it last,
// once everything else allowed the request, so that the gateway's own
// denials never spend a key's quota.
type Meter interface {
	// Use counts one use of k, which the Verifier has just allowed. A
	// refusal is a Usage whose Reason is not Allowed; an error means the
	// use could not be counted, and the request fails closed.
	Use(ctx context.Context, k *APIKey) (Usage, error)
}

// Usage is what counting one use of an API key found.
type Usage struct {
	// Reason is Allowed, UsageExceeded, RateLimited or
	// RateLimitedUnauthorized, or InvalidAPIKey when the key's row is gone.
	Reason Reason
	// RetryAfter, when positive, is how long until the refusal may lift: the
	// rate limit's window reopening, or the quota's next refill.
	RetryAfter time.Duration

	// Remaining is what is left of the key's quota after this use; set
	// when HasRemaining (the key has a quota).
	Remaining    int64
	HasRemaining bool
	// RefillAmount, RefillInterval and RefillIn describe a quota that
	// refills: to RefillAmount every RefillInterval, next in RefillIn.
	// RefillAmount is 0 when it does not.
	RefillAmount   int64
	RefillInterval time.Duration
	RefillIn       time.Duration

	// Limit, Window, Left and Reset describe the key's rate limit when it
	// applies (Limit > 0): Limit requests per Window, Left of them still
	// allowed, and Reset until the count starts again.
	Limit  int64
	Window time.Duration
	Left   int64
	Reset  time.Duration
}

// Headers the gateway sends about a key's usage: upstream, the quota left
// (an owned X-Auth- header, stripped from clients like the others); to the
// client, the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers).
const (
	HeaderKeyRemaining    = "X-Auth-Key-Remaining"
	HeaderRateLimitPolicy = "RateLimit-Policy"
	HeaderRateLimit       = "RateLimit"
)

// The policy names of the RateLimit fields: the key's rate limit, and its
// refilling quota.
const (
	PolicyRateLimit = "api-key-rate-limit"
	PolicyQuota     = "api-key-quota"
)

// AppendClientHeaders appends to dst the RateLimit-Policy and RateLimit
// fields that describe the key's limits: its rate limit, and its quota
// when it refills (a quota that never refills has no window to state).
// Nothing for a request that was not counted.
func (u *Usage) AppendClientHeaders(dst []Header) []Header {
	if u == nil {
		return dst
	}
	var policy, state []byte
	item := func(name string, q int64, w time.Duration, r int64, t time.Duration) {
		if len(policy) > 0 {
			policy, state = append(policy, ", "...), append(state, ", "...)
		}
		policy = strconv.AppendQuote(policy, name)
		policy = append(policy, ";q="...)
		policy = strconv.AppendInt(policy, q, 10)
		policy = append(policy, ";w="...)
		policy = strconv.AppendInt(policy, ceilSeconds(w), 10)
		state = strconv.AppendQuote(state, name)
		state = append(state, ";r="...)
		state = strconv.AppendInt(state, max(r, 0), 10)
		state = append(state, ";t="...)
		state = strconv.AppendInt(state, ceilSeconds(t), 10)
	}
	if u.Limit > 0 {
		item(PolicyRateLimit, u.Limit, u.Window, u.Left, u.Reset)
	}
	if u.HasRemaining && u.RefillAmount > 0 {
		item(PolicyQuota, u.RefillAmount, u.RefillInterval, u.Remaining, u.RefillIn)
	}
	if len(policy) == 0 {
		return dst
	}
	return append(dst, Header{HeaderRateLimitPolicy, string(policy)}, Header{HeaderRateLimit, string(state)})
}

// ceilSeconds rounds a duration up to whole seconds, never below 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
