package usage

import (
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// limited is a default Better-Auth key: 10 per 24 h, unlimited quota.
func limited() Row {
	return Row{CreatedAt: t0.Add(-time.Hour), HasWindow: true, Window: 86_400_000, HasMax: true, Max: 10}
}

func TestPlanQuota(t *testing.T) {
	for _, tc := range []struct {
		name   string
		row    Row
		now    time.Time
		reason betterauth.Reason
		set    Columns
		left   int64 // remaining after
		retry  time.Duration
	}{
		{"decrement", Row{HasRemaining: true, Remaining: 3, CreatedAt: t0}, t0, betterauth.Allowed, ColRemaining | ColUpdatedAt, 2, 0},
		{"last use", Row{HasRemaining: true, Remaining: 1, CreatedAt: t0}, t0, betterauth.Allowed, ColRemaining | ColUpdatedAt, 0, 0},
		{"exhausted, no refill: nothing written", Row{HasRemaining: true, CreatedAt: t0}, t0, betterauth.UsageExceeded, 0, 0, 0},
		{"exhausted, refillAmount but no interval", Row{HasRemaining: true, HasRefillAmount: true, RefillAmount: 5, CreatedAt: t0}, t0,
			betterauth.UsageExceeded, 0, 0, 0},
		{"exhausted, refill due in 1 s", Row{HasRemaining: true, HasRefillAmount: true, RefillAmount: 5, RefillInterval: 60_000,
			CreatedAt: t0.Add(-59 * time.Second)}, t0, betterauth.UsageExceeded, 0, 0, time.Second},
		{"refill exactly at the interval does not happen (strict)", Row{HasRemaining: true, HasRefillAmount: true, RefillAmount: 5,
			RefillInterval: 60_000, LastRefillAt: t0.Add(-time.Minute), CreatedAt: t0.Add(-time.Hour)}, t0, betterauth.UsageExceeded, 0, 0, 0},
		{"refill 1 ms past the interval", Row{HasRemaining: true, Remaining: 2, HasRefillAmount: true, RefillAmount: 5,
			RefillInterval: 60_000, LastRefillAt: t0.Add(-time.Minute - time.Millisecond), CreatedAt: t0.Add(-time.Hour)}, t0,
			betterauth.Allowed, ColRemaining | ColLastRefillAt | ColUpdatedAt, 4, 0},
		{"refill from createdAt", Row{HasRemaining: true, HasRefillAmount: true, RefillAmount: 5, RefillInterval: 1000,
			CreatedAt: t0.Add(-2 * time.Second)}, t0, betterauth.Allowed, ColRemaining | ColLastRefillAt | ColUpdatedAt, 4, 0},
		{"refillAmount 0 never refills", Row{HasRemaining: true, HasRefillAmount: true, RefillInterval: 1000,
			CreatedAt: t0.Add(-time.Hour)}, t0, betterauth.UsageExceeded, 0, 0, 0},
		{"unlimited: only updatedAt", Row{CreatedAt: t0}, t0, betterauth.Allowed, ColUpdatedAt, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, w := Rules{}.Plan(tc.row, tc.now)
			if u.Reason != tc.reason || w.Set != tc.set || u.RetryAfter != tc.retry {
				t.Fatalf("got %v set=%05b retry=%v, want %v set=%05b retry=%v", u.Reason, w.Set, u.RetryAfter, tc.reason, tc.set, tc.retry)
			}
			if tc.row.HasRemaining && (!u.HasRemaining || u.Remaining != tc.left) {
				t.Errorf("remaining after: %d (%v), want %d", u.Remaining, u.HasRemaining, tc.left)
			}
			if w.Set&ColRemaining != 0 && w.Remaining != tc.left {
				t.Errorf("writes remaining %d, want %d", w.Remaining, tc.left)
			}
			if w.Set&ColLastRefillAt != 0 && !w.LastRefillAt.Equal(tc.now) {
				t.Errorf("writes lastRefillAt %v, want %v", w.LastRefillAt, tc.now)
			}
		})
	}
}

func TestPlanRateLimit(t *testing.T) {
	row := limited()
	// start: lastRequest NULL
	u, w := Rules{}.Plan(row, t0)
	if u.Reason != betterauth.Allowed || w.Set != ColRequestCount|ColLastRequest|ColUpdatedAt || w.RequestCount != 1 || !w.LastRequest.Equal(t0) {
		t.Fatalf("start: %v %+v", u.Reason, w)
	}
	if u.Limit != 10 || u.Left != 9 || u.Window != 24*time.Hour || u.Reset != 24*time.Hour {
		t.Errorf("start usage: %+v", u)
	}
	// increment within the window
	row.RequestCount, row.LastRequest = 4, t0.Add(-time.Hour)
	if u, w = (Rules{}).Plan(row, t0); u.Reason != betterauth.Allowed || w.RequestCount != 5 || !w.LastRequest.Equal(t0) || u.Left != 5 {
		t.Fatalf("increment: %v %+v %+v", u.Reason, w, u)
	}
	// exactly the window since lastRequest: still inside (strict >)
	row.RequestCount, row.LastRequest = 10, t0.Add(-24*time.Hour)
	if u, _ = (Rules{}).Plan(row, t0); u.Reason != betterauth.RateLimited || u.RetryAfter != 0 {
		t.Fatalf("at the window's edge: %v retry %v", u.Reason, u.RetryAfter)
	}
	// 1 ms past it: reset
	row.LastRequest = t0.Add(-24*time.Hour - time.Millisecond)
	if u, w = (Rules{}).Plan(row, t0); u.Reason != betterauth.Allowed || w.RequestCount != 1 {
		t.Fatalf("reset: %v %+v", u.Reason, w)
	}
	// deny: tryAgainIn = window - since
	row.RequestCount, row.LastRequest = 10, t0.Add(-ms(4))
	u, w = Rules{}.Plan(row, t0)
	if u.Reason != betterauth.RateLimited || u.RetryAfter != ms(86_400_000-4) || w.Set != 0 {
		t.Fatalf("deny: %v retry %v set %05b", u.Reason, u.RetryAfter, w.Set)
	}
	// rateLimitEnabled false in the row, or globally: only lastRequest
	for _, r := range []Rules{{RateLimitOff: true}, {}} {
		off := row
		off.RateLimitOff = !r.RateLimitOff
		if u, w = r.Plan(off, t0); u.Reason != betterauth.Allowed || w.Set != ColLastRequest|ColUpdatedAt || u.Limit != 0 {
			t.Fatalf("off %+v: %v set %05b", r, u.Reason, w.Set)
		}
	}
	// window or max NULL: nothing but updatedAt
	none := row
	none.HasMax = false
	if u, w = (Rules{}).Plan(none, t0); u.Reason != betterauth.Allowed || w.Set != ColUpdatedAt {
		t.Fatalf("no max: %v set %05b", u.Reason, w.Set)
	}
}

// A rate-limited call spends remaining from 1.6.17 on, not before; and
// up to 1.6.10 it answers 401.
func TestPlanFamilies(t *testing.T) {
	row := limited()
	row.HasRemaining, row.Remaining = true, 5
	row.RequestCount, row.LastRequest = 10, t0.Add(-time.Second)
	for _, tc := range []struct {
		f      Family
		reason betterauth.Reason
		set    Columns
	}{
		{Current, betterauth.RateLimited, ColRemaining},
		{Spare429, betterauth.RateLimited, 0},
		{Legacy, betterauth.RateLimitedUnauthorized, 0},
	} {
		u, w := Rules{Family: tc.f}.Plan(row, t0)
		if u.Reason != tc.reason || w.Set != tc.set {
			t.Errorf("%v: %v set %05b, want %v set %05b", tc.f, u.Reason, w.Set, tc.reason, tc.set)
		}
		if tc.set != 0 && w.Remaining != 4 {
			t.Errorf("%v: spends to %d, want 4", tc.f, w.Remaining)
		}
	}
}

// Times are kept to the millisecond, as JavaScript's Date: Better-Auth's
// compare-and-swap on lastRefillAt must match what the gateway wrote.
func TestPlanMilliseconds(t *testing.T) {
	now := t0.Add(123456789 * time.Nanosecond)
	_, w := Rules{}.Plan(Row{HasRemaining: true, Remaining: 1, HasRefillAmount: true, RefillAmount: 3, RefillInterval: 1, CreatedAt: t0.Add(-time.Second)}, now)
	want := t0.Add(123 * time.Millisecond)
	if !w.LastRefillAt.Equal(want) || !w.UpdatedAt.Equal(want) {
		t.Fatalf("lastRefillAt %v updatedAt %v, want %v", w.LastRefillAt, w.UpdatedAt, want)
	}
}

func TestParseVersion(t *testing.T) {
	for v, want := range map[string]Family{
		"1.7.5": Current, "1.6.17": Current, "v1.6.20": Current, "2.0.0": Current, "1.6": Current,
		"1.6.16": Spare429, "1.6.11": Spare429, "1.6.11-beta.1": Spare429,
		"1.6.10": Legacy, "1.4.22": Legacy, "1.3.0": Legacy, "1.5": Legacy,
	} {
		if got, err := ParseVersion(v); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "1", "x.y", "1.2.9", "1.6.-1", "0.9"} {
		if _, err := ParseVersion(v); err == nil {
			t.Errorf("%q: no error", v)
		}
	}
}

func TestClientHeaders(t *testing.T) {
	u, _ := Rules{}.Plan(Row{HasRemaining: true, Remaining: 8, HasRefillAmount: true, RefillAmount: 10, RefillInterval: 3_600_000,
		LastRefillAt: t0.Add(-30 * time.Minute), CreatedAt: t0.Add(-time.Hour), HasWindow: true, Window: 60_000, HasMax: true, Max: 20,
		RequestCount: 3, LastRequest: t0.Add(-time.Second)}, t0)
	hs := u.AppendClientHeaders(nil)
	if len(hs) != 2 ||
		hs[0] != (betterauth.Header{Name: "RateLimit-Policy", Value: `"api-key-rate-limit";q=20;w=60, "api-key-quota";q=10;w=3600`}) ||
		hs[1] != (betterauth.Header{Name: "RateLimit", Value: `"api-key-rate-limit";r=16;t=60, "api-key-quota";r=7;t=1800`}) {
		t.Fatalf("%q", hs)
	}
	if hs := (&betterauth.Usage{HasRemaining: true, Remaining: 3}).AppendClientHeaders(nil); len(hs) != 0 {
		t.Errorf("a quota that never refills has no window, got %q", hs)
	}
}
