package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"

type staticStore struct{ rec betterauth.Record }

func (s staticStore) Lookup(context.Context, betterauth.Lookup) (betterauth.Record, error) {
	return s.rec, nil
}

// gate is a gate over the cache, counting in m (nil: nothing counted).
func gate(t testing.TB, m *metrics.Set) *betterauth.Gate {
	t.Helper()
	rec := betterauth.Record{APIKey: &betterauth.APIKey{ID: "k1", ConfigID: "default", Enabled: true,
		User: &betterauth.User{ID: "u1", Email: "alice@example.com", Name: "Alice"}}}
	v, err := betterauth.NewVerifier(betterauth.Options{Store: cache.New(staticStore{rec}, cache.Options{Metrics: m})})
	if err != nil {
		t.Fatal(err)
	}
	cfg := betterauth.GateConfig{Verifier: v}
	if m != nil {
		cfg.Observer = m.Decisions(metrics.FrontCaddy)
	}
	return betterauth.NewGate(cfg)
}

// A cached hit, counted (its decision and its tier), allocates nothing.
// Not parallel: AllocsPerRun counts every goroutine's allocations.
func TestCountedHitAllocatesNothing(t *testing.T) {
	m := metrics.New("test")
	g := gate(t, m)
	h := betterauth.HTTPHeader{"X-Api-Key": {key}}
	ctx := context.Background()
	g.Decide(ctx, h, netip.Addr{})
	if a := testing.AllocsPerRun(100, func() {
		if res := g.Decide(ctx, h, netip.Addr{}); !res.Allowed() {
			t.Fatal(res.Decision.Reason)
		}
	}); a != 0 {
		t.Errorf("%v allocations per counted decision", a)
	}
	g.Decide(ctx, betterauth.HTTPHeader{}, netip.Addr{})
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	want := map[[3]string]float64{{"caddy", "api_key", "OK"}: 102, {"caddy", "", "MISSING_CREDENTIAL"}: 1}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "test_decisions_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			var k [3]string
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "front_end":
					k[0] = l.GetValue()
				case "method":
					k[1] = l.GetValue()
				case "code":
					k[2] = l.GetValue()
				}
			}
			if got := s.GetCounter().GetValue(); got != want[k] {
				t.Errorf("%v: %v, want %v", k, got, want[k])
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing %v", want)
	}
}

// One Set registers on any number of registries (Caddy makes one per
// config load), and again on the same one (a second module); another Set
// of the same names is refused there.
func TestRegister(t *testing.T) {
	t.Parallel()
	m := metrics.New("test")
	for range 2 {
		reg := prometheus.NewPedanticRegistry()
		for range 2 {
			if err := m.Register(reg); err != nil {
				t.Fatal(err)
			}
		}
		if err := metrics.New("test").Register(reg); err == nil {
			t.Error("a second Set of the same names registered")
		}
		if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
			t.Errorf("%d series, %v", n, err)
		}
	}
}

// Lookup errors are counted by kind: deadlines (the lookup's own, or a
// client's read timeout) are timeouts.
func TestLookupErrorKinds(t *testing.T) {
	t.Parallel()
	m := metrics.New("test")
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	m.Looked(metrics.BackendRedis, time.Millisecond, fmt.Errorf("get: %w", context.DeadlineExceeded))
	m.Looked(metrics.BackendRedis, time.Millisecond, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded})
	m.Looked(metrics.BackendRedis, time.Millisecond, context.Canceled)
	m.Looked(metrics.BackendPostgres, time.Millisecond, errors.New("connection refused"))
	m.Looked(metrics.BackendPostgres, time.Millisecond, nil)
	want := `
# HELP test_lookup_errors_total Lookups that failed, by backend and kind: timeout, canceled or error.
# TYPE test_lookup_errors_total counter
test_lookup_errors_total{backend="mysql",kind="canceled"} 0
test_lookup_errors_total{backend="mysql",kind="error"} 0
test_lookup_errors_total{backend="mysql",kind="timeout"} 0
test_lookup_errors_total{backend="postgresql",kind="canceled"} 0
test_lookup_errors_total{backend="postgresql",kind="error"} 1
test_lookup_errors_total{backend="postgresql",kind="timeout"} 0
test_lookup_errors_total{backend="redis",kind="canceled"} 1
test_lookup_errors_total{backend="redis",kind="error"} 0
test_lookup_errors_total{backend="redis",kind="timeout"} 2
test_lookup_errors_total{backend="secondary_storage",kind="canceled"} 0
test_lookup_errors_total{backend="secondary_storage",kind="error"} 0
test_lookup_errors_total{backend="secondary_storage",kind="timeout"} 0
test_lookup_errors_total{backend="sqlite",kind="canceled"} 0
test_lookup_errors_total{backend="sqlite",kind="error"} 0
test_lookup_errors_total{backend="sqlite",kind="timeout"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "test_lookup_errors_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.Collectors()[2], "test_lookup_duration_seconds"); n != 5 {
		t.Errorf("%d duration series, want one per backend", n)
	}
}

// A nil Set counts nothing and does not panic.
func TestNilSet(t *testing.T) {
	t.Parallel()
	var m *metrics.Set
	m.Answered(metrics.TierMemory)
	m.Looked(metrics.BackendRedis, 0, nil)
	m.Revoked(metrics.SourceRelay, 1, 1)
	m.StreamOpened()
	m.StreamEnded(metrics.EndedDone)
	m.Used(metrics.UsageRedis, betterauth.Allowed, nil)
	m.Limited(true)
	if m.Decisions("caddy") != nil {
		t.Error("a nil Set gave a counter")
	}
}

// The hot path with and without metrics: a cached API key through the
// gate.
func BenchmarkGateDecideCached(b *testing.B) {
	for name, m := range map[string]*metrics.Set{"off": nil, "on": metrics.New("bench")} {
		b.Run(name, func(b *testing.B) {
			g := gate(b, m)
			h := betterauth.HTTPHeader{"X-Api-Key": {key}, "Accept": {"*/*"}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if res := g.Decide(ctx, h, netip.Addr{}); !res.Allowed() {
					b.Fatal(res.Decision.Reason)
				}
			}
		})
	}
}
