package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// BenchmarkCaddyUsage measures what counting uses costs through a whole
// Caddy server (in process, loopback upstream), on one hot key that every
// request spends: usage off, database (a transaction on the row, two
// round trips, the row's lock serialising the replicas' requests) and
// redis (one script call). p50 and p99 are each request's latency.
//
//	go test -run '^$' -bench CaddyUsage -benchtime 3s -count 3 ./integration/
func BenchmarkCaddyUsage(b *testing.B) {
	f := testenv.Seed(b, testenv.SeedOptions{})
	redisURL := testenv.Require(b, "TEST_REDIS_URL")
	ba := startUsageShell(b, f.DatabaseURL)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer upstream.Close()
	up := strings.TrimPrefix(upstream.URL, "http://")
	b.Setenv("DATABASE_URL", f.DatabaseURL)
	b.Setenv("BETTER_AUTH_SECRET", testenv.Secret)
	modes := []string{"off", "database", "redis"}
	var sites strings.Builder
	for _, mode := range modes {
		fmt.Fprintf(&sites, `
http://127.0.0.1:%d {
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		usage %s
		redis %s {
			prefix bench-%s:
		}
	}
	reverse_proxy %s
}`, testenv.FreePort(b), mode, redisURL, strings.ToLower(b.Name()+mode), up)
	}
	caddyfile := `{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	log default {
		level ERROR
	}
}` + sites.String()
	servers := map[string]*caddyhttp.Server{}
	for srv, raw := range loadCaddy(b, caddyfile) {
		for _, mode := range modes {
			if strings.Contains(raw, `"mode":"`+mode+`"`) {
				servers[mode] = srv
			}
		}
	}
	for _, mode := range modes {
		srv := servers[mode]
		if srv == nil {
			b.Fatalf("no server for usage %s", mode)
		}
		b.Run("usage="+mode, func(b *testing.B) {
			// A key every request spends, limited far beyond the run.
			k := ba.create(b, f.Users.Alice.ID, map[string]any{"remaining": 2_000_000_000,
				"rateLimitTimeWindow": 60_000, "rateLimitMax": 2_000_000_000})
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/mcp", nil)
			req.Header.Set("X-Api-Key", k.Key)
			check := httptest.NewRecorder()
			srv.ServeHTTP(check, req.Clone(req.Context()))
			if check.Code != 200 {
				b.Fatalf("%s: %d %s", mode, check.Code, check.Body)
			}
			var mu sync.Mutex
			var lat []time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					w := httptest.NewRecorder()
					start := time.Now()
					srv.ServeHTTP(w, req.Clone(req.Context()))
					mine = append(mine, time.Since(start))
					if w.Code != 200 {
						b.Errorf("%d %s", w.Code, w.Body)
						return
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
