package gateway

import (
	"context"
	"database/sql"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

// A gateway opened with a metrics Set counts its gates' decisions by front
// end, method and code, the tiers that answered, the database's lookups,
// the rate limits and the watched streams; no label carries a secret or
// an id.
func TestGatewayMetrics(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	set := metrics.New("test")
	reg := prometheus.NewPedanticRegistry()
	if err := set.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := set.Register(reg); err != nil { // a second module of the same config
		t.Fatal(err)
	}
	o := Options{Database: "sqlite://" + path, APIKeyPrefixes: []string{demo.KeyPrefix},
		RateLimits: []RateLimit{{Name: "per-key", Key: "api_key", Rate: 2, Window: Duration(time.Hour)}},
		Metrics:    set, FrontEnd: metrics.FrontCaddy}
	gw, err := Open(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	gate, err := gw.Gate(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	decide := func(h betterauth.HTTPHeader) betterauth.Result {
		return gate.Decide(ctx, h, netip.Addr{})
	}
	key := betterauth.HTTPHeader{"X-Api-Key": {creds.APIKey}}
	unknown := betterauth.HTTPHeader{"X-Api-Key": {demo.KeyPrefix + "nosuchkeynosuchkeynosuchkey"}}
	res := decide(key) // database
	if !res.Allowed() {
		t.Fatal(res.Decision.Reason)
	}
	_, st := gw.Streams().Watch(ctx, gate, &res)
	if got := gauge(t, reg, "test_streams_open"); got != 1 {
		t.Errorf("%v streams open, want 1", got)
	}
	st.Release()
	st.Release()                    // twice: counted once
	decide(key)                     // memory
	decide(key)                     // memory, rate-limited
	decide(unknown)                 // database
	decide(unknown)                 // negative
	decide(betterauth.HTTPHeader{}) // no lookup

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"test_decisions_total", []string{"OK", "caddy", "api_key"}, 2},
		{"test_decisions_total", []string{"RATE_LIMIT_EXCEEDED", "caddy", "api_key"}, 1},
		{"test_decisions_total", []string{"INVALID_API_KEY", "caddy", "api_key"}, 2},
		{"test_decisions_total", []string{"MISSING_CREDENTIAL", "caddy", ""}, 1},
		{"test_cache_answers_total", []string{"database"}, 2},
		{"test_cache_answers_total", []string{"memory"}, 2},
		{"test_cache_answers_total", []string{"negative"}, 1},
		{"test_rate_limit_decisions_total", []string{"allowed"}, 2},
		{"test_rate_limit_decisions_total", []string{"limited"}, 1},
		{"test_streams_ended_total", []string{"done"}, 1},
	} {
		if got := counter(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := gauge(t, reg, "test_streams_open"); got != 0 {
		t.Errorf("%v streams open after release, want 0", got)
	}
	if n := histogramCount(t, reg, "test_lookup_duration_seconds", "sqlite"); n != 2 {
		t.Errorf("%d sqlite lookups timed, want 2", n)
	}
	// A stream whose session is revoked ends, counted as revoked.
	if res = decide(betterauth.HTTPHeader{"Authorization": {"Bearer " + creds.SessionToken}}); !res.Allowed() {
		t.Fatal(res.Decision.Reason)
	}
	sctx, st := gw.Streams().Watch(ctx, gate, &res)
	rw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.Exec(`DELETE FROM session WHERE id = ?`, creds.SessionID); err != nil {
		t.Fatal(err)
	}
	gw.apply(ctx, []cache.Revocation{{Target: cache.TargetSession, ID: creds.SessionID}}, nil)
	select {
	case <-sctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked stream goes on")
	}
	st.Release()
	if got := counter(t, reg, "test_streams_ended_total", "revoked"); got != 1 {
		t.Errorf("%v streams ended revoked, want 1", got)
	}

	fams, _ := reg.Gather()
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, secret := range []string{creds.APIKey, creds.KeyID, creds.UserID, creds.SessionID, creds.SessionToken} {
					if strings.Contains(l.GetValue(), secret) {
						t.Errorf("%s{%s=%q} carries a secret or an id", f.GetName(), l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
}

// find returns the series of family name whose label values are values,
// in the labels' alphabetical order.
func find(t *testing.T, g prometheus.Gatherer, name string, values ...string) *dto.Metric {
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
			return m
		}
	}
	return &dto.Metric{}
}

func counter(t *testing.T, g prometheus.Gatherer, name string, values ...string) float64 {
	t.Helper()
	return find(t, g, name, values...).GetCounter().GetValue()
}

func gauge(t *testing.T, g prometheus.Gatherer, name string, values ...string) float64 {
	t.Helper()
	return find(t, g, name, values...).GetGauge().GetValue()
}

func histogramCount(t *testing.T, g prometheus.Gatherer, name string, values ...string) uint64 {
	t.Helper()
	return find(t, g, name, values...).GetHistogram().GetSampleCount()
}

// Invalidations relayed by another gateway over the shared Redis are
// counted by source, with their delay.
func TestRelayedRevocationsCounted(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "auth.db")
	if _, err := demo.Create(context.Background(), path, time.Now()); err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	set := metrics.New("test")
	reg := prometheus.NewPedanticRegistry()
	if err := set.Register(reg); err != nil {
		t.Fatal(err)
	}
	base := Options{Database: "sqlite://" + path, Secret: "relay-test-secret-0123456789abcdefghijkl", Redis: &Redis{URL: "redis://" + mr.Addr()}}
	open := func(o Options) *Gateway {
		gw, err := Open(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gw.Close() })
		gate, err := gw.Gate(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		gate.Decide(context.Background(), betterauth.HTTPHeader{"X-Api-Key": {"ba_start_the_watchers"}}, netip.Addr{}) // starts the relay
		return gw
	}
	sender := open(base)
	counted := base
	counted.Metrics = set
	open(counted)
	for start := time.Now(); counter(t, reg, "test_revocations_total", "relay") == 0; {
		if time.Since(start) > 10*time.Second {
			t.Fatal("no relayed revocation counted")
		}
		// Until the receiver subscribes, what is published is lost: again.
		sender.revoker.add(cache.Revocation{Target: cache.TargetAPIKey, ID: "k1"}, true)
		time.Sleep(20 * time.Millisecond)
	}
	if n := histogramCount(t, reg, "test_revocation_delay_seconds", "relay"); n == 0 {
		t.Error("no relay delay observed")
	}
}

// disable_metrics leaves a route's decisions uncounted.
func TestDisableMetrics(t *testing.T) {
	t.Parallel()
	set := metrics.New("test")
	reg := prometheus.NewPedanticRegistry()
	if err := set.Register(reg); err != nil {
		t.Fatal(err)
	}
	for _, off := range []bool{true, false} {
		g, err := NewGate(Options{Database: "sqlite:x.db", Metrics: set, FrontEnd: metrics.FrontCaddy, DisableMetrics: off}, noStore{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		g.Decide(context.Background(), betterauth.HTTPHeader{}, netip.Addr{})
	}
	if got := counter(t, reg, "test_decisions_total", "MISSING_CREDENTIAL", "caddy", ""); got != 1 {
		t.Errorf("%v decisions counted, want 1 (the route without disable_metrics)", got)
	}
}
