package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// Each lookup is counted once, by the tier that answered it; the inner
// store's reads are timed under the configured backend, and its failures
// counted by kind. Not parallel: AllocsPerRun counts every goroutine's
// allocations.
func TestMetricsCountTiers(t *testing.T) {
	m := metrics.New("test")
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t0}
	inner := &countingStore{rec: keyRecord(time.Time{})}
	s := New(inner, Options{TTL: time.Minute, Jitter: -1, StaleIfError: time.Hour, Now: clk.now,
		Metrics: m, Backend: metrics.BackendSQLite})
	ctx := context.Background()
	s.Lookup(ctx, lookup("k")) // database
	s.Lookup(ctx, lookup("k")) // memory
	if a := testing.AllocsPerRun(100, func() { s.Lookup(ctx, lookup("k")) }); a != 0 {
		t.Errorf("a counted hit allocates %v times", a)
	}
	unknown := New(&countingStore{}, Options{Metrics: m, Backend: metrics.BackendSQLite})
	unknown.Lookup(ctx, lookup("nope")) // database
	unknown.Lookup(ctx, lookup("nope")) // negative
	clk.advance(2 * time.Minute)
	inner.err = errors.New("down")
	if _, err := s.Lookup(ctx, lookup("k")); err != nil { // stale, and an error
		t.Fatal(err)
	}
	for tier, want := range map[string]float64{"memory": 102, "database": 2, "negative": 1, "stale": 1, "shared": 0} {
		if got := value(t, reg, "test_cache_answers_total", tier); got != want {
			t.Errorf("%s: %v answers, want %v", tier, got, want)
		}
	}
	if got := value(t, reg, "test_lookup_errors_total", "sqlite", "error"); got != 1 {
		t.Errorf("%v errors, want 1", got)
	}
	if n := testutil.CollectAndCount(m.Collectors()[2], "test_lookup_duration_seconds"); n != 5 {
		t.Errorf("%d duration series, want one per backend", n)
	}
}

// value is the counter of family name whose label values are values (in
// the labels' alphabetical order); 0 when absent.
func value(t *testing.T, g prometheus.Gatherer, name string, values ...string) float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != values[i] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
