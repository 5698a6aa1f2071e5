package integration

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/internal/testenv"
)

// Bounds of the soak's oracle.
const (
	// A revocation must be refused by both gateways this long after
	// Better-Auth's call returned (the triggers push it in milliseconds).
	soakPushBound = 2 * time.Second
	// Expiry is checked against the clock on every hit: either answer is
	// right this close to the instant.
	soakExpirySkew = time.Second
	// 503 is a correct, fail-closed answer from the database's stop until
	// this long after it is back.
	soakRestartGrace = 2 * time.Second
)

// soakCred is one credential of the mix and what the oracle knows of it.
type soakCred struct {
	group string
	hdr   func() http.Header
	user  string // the user an allowed request must carry
	valid bool   // at the start
	// The denial's codes once it is (or always was) invalid. An expired key
	// may also be unknown: Better-Auth deletes expired keys whenever it
	// creates, updates or deletes one (deleteAllExpiredApiKeys).
	codes []string
	// While valid, it becomes invalid somewhere in [from, to]: allowed is
	// required for requests answered before from, a denial for requests
	// sent after to, either in between. Written by the test goroutine,
	// read after the load has stopped. changed is when Better-Auth's call
	// returned, or the expiry instant.
	from, to, changed time.Time
}

type soakSample struct {
	gw, cred   int
	sent, done time.Time
	status     int
	user, code string // the upstream's X-Auth-User-Id, or the denial's code
	err        string
}

type soakUser struct {
	ID       string        `json:"id"`
	Keys     []testenv.Key `json:"keys"`
	Sessions []struct {
		Signed string `json:"signed"`
		Token  string `json:"token"`
	} `json:"sessions"`
}

type soakGauges struct {
	at               time.Duration
	goroutines, heap [2]float64
	rss, streams     [2]float64
	scrapeErr        [2]error
}

// TestSoak runs fixed-rate mixed traffic against two gateways that share
// one Redis, for SOAK_DURATION (scripts/soak.sh), while Better-Auth revokes
// credentials, others expire, and PostgreSQL restarts in the middle. Every
// answer is checked against what the credential's state was when it was
// sent; none may be wrong, and goroutines must return to their level
// before the load once it stops. Latency percentiles and the memory and
// goroutine series are reported, not asserted.
func TestSoak(t *testing.T) {
	dur := soakEnvDuration(t, "SOAK_DURATION", 0)
	if dur == 0 {
		t.Skip("SOAK_DURATION is not set; run scripts/soak.sh DURATION")
	}
	if dur < 30*time.Second {
		t.Fatalf("SOAK_DURATION %v: at least 30s, for the scenario's phases", dur)
	}
	rate := 200
	if s := os.Getenv("SOAK_RATE"); s != "" {
		var err error
		if rate, err = strconv.Atoi(s); err != nil || rate < 10 {
			t.Fatalf("SOAK_RATE %q: requests per second, at least 10", s)
		}
	}
	pgDown := soakEnvDuration(t, "SOAK_PG_DOWN", 2*time.Second)
	every := soakEnvDuration(t, "SOAK_SAMPLE_EVERY", 5*time.Second)
	redisURL := testenv.Require(t, "TEST_REDIS_URL")

	pg := testenv.StartPostgres(t)
	f := seedWithTriggers(t, testenv.SeedOptions{Server: pg.URL})
	more := func(email string, keys, sessions int) soakUser {
		var u soakUser
		out := testenv.RunSeed(t, f.DatabaseURL, nil, "more", email, fmt.Sprint(keys), fmt.Sprint(sessions))
		if err := json.Unmarshal(out, &u); err != nil {
			t.Fatalf("seed more %s: %v\n%s", email, err, out)
		}
		return u
	}
	alice := more("alice@example.com", 8, 5)
	zoe := more("zoe@example.com", 2, 1)
	carol := more("carol@example.com", 1, 1) // banned after the restart

	// The upstream answers with the identity the gateway sent it.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+r.Header.Get("X-Auth-User-Id"))
	}))
	t.Cleanup(up.Close)
	prefix := "soak-" + strings.ToLower(rand.Text()[:8]) + ":"
	type gateway struct {
		*testenv.Caddy
		admin string
	}
	var gws [2]gateway
	for i := range gws {
		admin, port := testenv.FreePort(t), testenv.FreePort(t)
		c := testenv.StartCaddyfile(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	persist_config off
	default_bind 127.0.0.1
}
http://127.0.0.1:%d {
	better_auth {
		database {env.DATABASE_URL}
		secret {env.BETTER_AUTH_SECRET}
		# Revocations reach the gateways only by the triggers' push.
		cache {
			ttl 1h
		}
		redis {env.CACHE_REDIS_URL} {
			prefix %s
			timeout 2s
		}
	}
	reverse_proxy %s
}
`, admin, port, prefix, strings.TrimPrefix(up.URL, "http://")),
			"DATABASE_URL="+f.DatabaseURL, "BETTER_AUTH_SECRET="+testenv.Secret, "CACHE_REDIS_URL="+redisURL)
		c.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
		settle(t, c, true)
		gws[i] = gateway{c, fmt.Sprintf("http://127.0.0.1:%d", admin)}
	}

	// The mix. Every credential is drawn as often as any other.
	key := func(k string) func() http.Header { return func() http.Header { return h("X-Api-Key", k) } }
	bearer := func(s string) func() http.Header {
		return func() http.Header { return h("Authorization", "Bearer "+s) }
	}
	cookie := func(s string) func() http.Header {
		return func() http.Header { return h("Cookie", "better-auth.session_token="+url.QueryEscape(s)) }
	}
	valid := func(group string, hdr func() http.Header, user string, codes ...string) *soakCred {
		return &soakCred{group: group, hdr: hdr, user: user, valid: true, codes: codes}
	}
	invalid := func(group string, hdr func() http.Header, codes ...string) *soakCred {
		return &soakCred{group: group, hdr: hdr, codes: codes}
	}
	const (
		gValid, gNever, gUnknown = "valid throughout", "never valid", "unknown"
		gRev1, gRev2             = "revoked before the restart", "revoked after the restart"
		gExp1, gExp2             = "expiring at 1/3", "expiring at 2/3"
	)
	creds := []*soakCred{
		valid(gValid, key(f.Keys.Valid.Key), f.Users.Alice.ID),
		valid(gValid, key(alice.Keys[0].Key), alice.ID),
		valid(gValid, key(alice.Keys[1].Key), alice.ID),
		valid(gValid, key(zoe.Keys[0].Key), zoe.ID),
		valid(gValid, key(zoe.Keys[1].Key), zoe.ID),
		valid(gValid, bearer(f.Users.Alice.Signed), f.Users.Alice.ID),
		valid(gValid, cookie(f.Users.Zoe.Signed), zoe.ID),
		valid(gValid, bearer(alice.Sessions[0].Token), alice.ID),
		valid(gValid, cookie(zoe.Sessions[0].Signed), zoe.ID),

		invalid(gNever, key(f.Keys.Disabled.Key), "KEY_DISABLED"),
		invalid(gNever, key(f.Keys.Expired.Key), "KEY_EXPIRED", "INVALID_API_KEY"),
		invalid(gNever, key(f.Keys.Banned.Key), "USER_BANNED"),
		invalid(gNever, bearer(f.Users.Bob.Signed), "USER_BANNED"),
		invalid(gNever, cookie(f.Users.Expired.Signed), "SESSION_EXPIRED"),
		invalid(gNever, cookie(f.Users.Alice.Token+".c29hay1mb3JnZWQtc2lnbmF0dXJlLTAxMjM0NTY3ODk="), "INVALID_SESSION"),

		// A new key on every request (a database lookup each), and a few
		// that come back (the negative cache).
		invalid(gUnknown, func() http.Header { return h("X-Api-Key", "ba_soak"+rand.Text()+rand.Text()) }, "INVALID_API_KEY"),
		invalid(gUnknown, key("ba_soak_unknown_1"), "INVALID_API_KEY"),
		invalid(gUnknown, key("ba_soak_unknown_2"), "INVALID_API_KEY"),
		invalid(gUnknown, bearer(rand.Text()+rand.Text()[:6]), "INVALID_SESSION"),
	}
	type revocation struct {
		name  string
		seed  []string
		creds []*soakCred
	}
	wave := func(group string, delKey, disKey testenv.Key, session string, sessionHdr func() http.Header, bannedID, bannedKey string, bannedSession func() http.Header) []revocation {
		add := func(c ...*soakCred) []*soakCred { creds = append(creds, c...); return c }
		return []revocation{
			{"key deleted", []string{"delete-key", delKey.ID, f.Users.Alice.Signed}, add(valid(group, key(delKey.Key), alice.ID, "INVALID_API_KEY"))},
			{"key disabled", []string{"disable-key", disKey.ID, alice.ID}, add(valid(group, key(disKey.Key), alice.ID, "KEY_DISABLED"))},
			{"session revoked", []string{"revoke-session", session}, add(valid(group, sessionHdr, alice.ID, "INVALID_SESSION"))},
			{"user banned", []string{"ban-user", bannedID}, add(
				valid(group, key(bannedKey), bannedID, "USER_BANNED"),
				valid(group, bannedSession, bannedID, "USER_BANNED"))},
		}
	}
	wave1 := wave(gRev1, alice.Keys[2], alice.Keys[3], alice.Sessions[1].Token, cookie(alice.Sessions[1].Signed),
		f.Users.Eve.ID, f.Keys.Eve.Key, bearer(f.Users.Eve.Signed))
	wave2 := wave(gRev2, alice.Keys[4], alice.Keys[5], alice.Sessions[2].Token, bearer(alice.Sessions[2].Signed),
		carol.ID, carol.Keys[0].Key, cookie(carol.Sessions[0].Signed))
	type expiring struct {
		c       *soakCred
		table   string
		column  string
		rowID   string
		atFract float64
	}
	var expiries []expiring
	for i, fr := range []float64{1.0 / 3, 2.0 / 3} {
		group := []string{gExp1, gExp2}[i]
		k, s := alice.Keys[6+i], alice.Sessions[3+i]
		kc := valid(group, key(k.Key), alice.ID, "KEY_EXPIRED", "INVALID_API_KEY")
		sc := valid(group, bearer([]string{s.Token, s.Signed}[i]), alice.ID, "SESSION_EXPIRED")
		creds = append(creds, kc, sc)
		expiries = append(expiries, expiring{kc, "apikey", "id", k.ID, fr}, expiring{sc, "session", "token", s.Token, fr})
	}

	// Expiry times are set in the rows, as an app would have set them at
	// creation (Better-Auth's own expiresIn has a one-day minimum for keys).
	start := time.Now().Add(time.Second)
	for _, e := range expiries {
		at := start.Add(time.Duration(float64(dur) * e.atFract))
		testenv.Exec(t, f.DatabaseURL, fmt.Sprintf(`UPDATE %q SET "expiresAt" = $1 WHERE %q = $2`, e.table, e.column), at, e.rowID)
		e.c.from, e.c.to, e.c.changed = at.Add(-soakExpirySkew), at.Add(soakExpirySkew), at
	}

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	scrape := func(i int) (map[string]float64, error) {
		resp, err := client.Get(gws[i].admin + "/metrics")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		m := parseExposition(string(b))
		m["rss"] = soakRSS(gws[i].Pid())
		return m, nil
	}

	// The sampler: both gateways' gauges before the load, then every few
	// seconds.
	sample := func() soakGauges {
		g := soakGauges{at: time.Since(start).Round(time.Second)}
		for i := range gws {
			m, err := scrape(i)
			g.scrapeErr[i] = err
			if err == nil {
				g.goroutines[i], g.heap[i], g.rss[i] = m["go_goroutines"], m["go_memstats_heap_inuse_bytes"], m["rss"]
				g.streams[i] = m["caddy_better_auth_streams_open"]
			}
		}
		return g
	}
	before := sample()
	if before.scrapeErr[0] != nil || before.scrapeErr[1] != nil {
		t.Fatalf("scraping the gateways' metrics: %v %v", before.scrapeErr[0], before.scrapeErr[1])
	}
	var (
		gaugesMu sync.Mutex
		gauges   = []soakGauges{before}
	)
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			g := sample()
			gaugesMu.Lock()
			gauges = append(gauges, g)
			gaugesMu.Unlock()
		}
	})

	// The load: open loop, rate requests a second whatever the answers
	// take, to the gateways in turn. Each wake-up sends what is due by the
	// clock, so that a tick the scheduler delayed on a loaded machine
	// delays requests instead of dropping them.
	var (
		samplesMu     sync.Mutex
		samples       []soakSample
		sent, skipped atomic.Int64
	)
	do := func(g, ci int) {
		s := soakSample{gw: g, cred: ci}
		req, _ := http.NewRequest(http.MethodGet, gws[g].URL+"/", nil)
		for k, vs := range creds[ci].hdr() {
			req.Header[k] = vs
		}
		s.sent = time.Now()
		resp, err := client.Do(req)
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			s.status = resp.StatusCode
			if s.status == 200 {
				user, ok := strings.CutPrefix(string(b), "ok ")
				if !ok {
					user = "(not the upstream's answer: " + string(b) + ")"
				}
				s.user = user
			} else {
				var body struct{ Code string }
				json.Unmarshal(b, &body)
				s.code = body.Code
			}
		}
		s.done = time.Now()
		if err != nil {
			s.err = err.Error()
		}
		samplesMu.Lock()
		samples = append(samples, s)
		samplesMu.Unlock()
	}
	stopLoad := make(chan struct{})
	var generator, inflight sync.WaitGroup
	generator.Go(func() {
		time.Sleep(time.Until(start)) // pacing: the load begins at start
		slots := make(chan struct{}, 4*rate)
		rng := mrand.New(mrand.NewPCG(1, 2))
		tick := time.NewTicker(max(time.Millisecond, time.Second/time.Duration(rate)))
		defer tick.Stop()
		for i := 0; ; {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			for due := int(time.Since(start).Seconds() * float64(rate)); i < due; i++ {
				select {
				case slots <- struct{}{}:
				default: // more than 4 s of requests outstanding
					skipped.Add(1)
					continue
				}
				sent.Add(1)
				g, ci := i%2, rng.IntN(len(creds))
				inflight.Go(func() {
					defer func() { <-slots }()
					do(g, ci)
				})
			}
		}
	})

	// The scenario, on the test's goroutine. at waits for a moment of the
	// run: pacing, not synchronization.
	at := func(fr float64) { time.Sleep(time.Until(start.Add(time.Duration(float64(dur) * fr)))) }
	var timeline []string
	mark := func(format string, args ...any) {
		timeline = append(timeline, fmt.Sprintf("%6.1fs  ", time.Since(start).Seconds())+fmt.Sprintf(format, args...))
	}
	revoke := func(rs []revocation) {
		for _, r := range rs {
			from := time.Now()
			testenv.RunSeed(t, f.DatabaseURL, nil, r.seed...)
			took := time.Since(from)
			now := time.Now()
			for _, c := range r.creds {
				c.from, c.to, c.changed = from, now.Add(soakPushBound), now
			}
			mark("Better-Auth: %s (%v)", r.name, took.Round(time.Millisecond))
		}
	}
	at(0.25)
	revoke(wave1)
	at(0.5)
	mark("PostgreSQL stopped")
	restartFrom := time.Now()
	pg.Stop(t)
	time.Sleep(pgDown) // the outage
	pg.Start(t)
	restartTo := time.Now()
	mark("PostgreSQL started")
	for i, gw := range gws {
		gw.WaitForLogCount(t, "listening for revocations", 2, max(5*time.Second, time.Until(start.Add(dur*3/4))))
		mark("gateway %d listens for revocations again", i)
	}
	at(0.75)
	revoke(wave2)
	at(1)
	close(stopLoad)
	mark("load stopped")
	generator.Wait()
	inflight.Wait()
	close(stopSampling)
	sampler.Wait()
	end := time.Now()

	// Leaks: with the load's connections closed, both gateways' goroutines
	// must come back to within a few of their idle level before the load,
	// and no request may still be tied to its credential.
	client.CloseIdleConnections()
	up.CloseClientConnections()
	early := soakEarly(gauges, dur)
	var settled [2]float64
	for i := range gws {
		limit := before.goroutines[i] + 10
		deadline := time.Now().Add(30 * time.Second)
		for {
			m, err := scrape(i)
			if err == nil {
				settled[i] = m["go_goroutines"]
				if settled[i] <= limit && m["caddy_better_auth_streams_open"] == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Errorf("gateway %d: %v goroutines and %v open streams 30s after the load, %v before it (limit %v); scrape error %v",
					i, settled[i], m["caddy_better_auth_streams_open"], before.goroutines[i], limit, err)
				break
			}
			time.Sleep(100 * time.Millisecond) // polling
		}
	}

	// The oracle.
	restartEnd := restartTo.Add(soakRestartGrace)
	type tally struct{ n, allowed, denied, unavailable, window int }
	groups := map[string]*tally{}
	var (
		wrong                                 []string
		nWrong, n503In, n503Out, nErr, nOther int
		lat                                   [3][]time.Duration
		latestAllow                           = map[string]time.Duration{} // per group: the last allowed request's send time, from the change
	)
	for _, s := range samples {
		c := creds[s.cred]
		g := groups[c.group]
		if g == nil {
			g = &tally{}
			groups[c.group] = g
		}
		g.n++
		if s.err != "" {
			nErr++
			if nErr <= 5 {
				wrong = append(wrong, fmt.Sprintf("gateway %d, %s: %s", s.gw, c.group, s.err))
			}
			continue
		}
		d := s.done.Sub(s.sent)
		lat[s.gw] = append(lat[s.gw], d)
		lat[2] = append(lat[2], d)
		mustAllow := c.valid && (c.from.IsZero() || s.done.Before(c.from))
		mustDeny := !c.valid || (!c.to.IsZero() && s.sent.After(c.to))
		if !mustAllow && !mustDeny {
			g.window++
		}
		var bad string
		switch s.status {
		case 200:
			g.allowed++
			switch {
			case mustDeny:
				bad = "allowed"
			case s.user != c.user:
				bad = fmt.Sprintf("allowed as %q, want %q", s.user, c.user)
			}
			if !c.changed.IsZero() {
				if d, ok := latestAllow[c.group]; !ok || s.sent.Sub(c.changed) > d {
					latestAllow[c.group] = s.sent.Sub(c.changed)
				}
			}
		case 401, 403:
			g.denied++
			wantStatus := 401
			if len(c.codes) > 0 && c.codes[0] == "USER_BANNED" {
				wantStatus = 403
			}
			switch {
			case mustAllow:
				bad = fmt.Sprintf("denied %d %s", s.status, s.code)
			case !slices.Contains(c.codes, s.code) || s.status != wantStatus:
				bad = fmt.Sprintf("denied %d %s, want %d %v", s.status, s.code, wantStatus, c.codes)
			}
		case 503:
			g.unavailable++
			if !s.done.Before(restartFrom) && s.sent.Before(restartEnd) {
				n503In++
			} else {
				n503Out++
				if n503Out <= 5 {
					t.Logf("503 outside the restart window: gateway %d, %s, sent at %.1fs", s.gw, c.group, s.sent.Sub(start).Seconds())
				}
			}
		default:
			nOther++
			bad = fmt.Sprintf("status %d %s", s.status, s.code)
		}
		if bad != "" {
			nWrong++
			if len(wrong) < 20 {
				change := ""
				if !c.from.IsZero() {
					change = fmt.Sprintf(" (changed within [%.3fs, %.3fs])", c.from.Sub(start).Seconds(), c.to.Sub(start).Seconds())
				}
				wrong = append(wrong, fmt.Sprintf("gateway %d, %s, sent at %.3fs%s: %s", s.gw, c.group, s.sent.Sub(start).Seconds(), change, bad))
			}
		}
	}

	// The report.
	var r strings.Builder
	fmt.Fprintf(&r, "soak: %v at %d req/s over 2 gateways sharing Redis: %d requests sent (%.1f/s), %d answered, %d not sent (over 4 s outstanding); finished %v after the load\n",
		dur, rate, sent.Load(), float64(sent.Load())/dur.Seconds(), len(samples), skipped.Load(), end.Sub(start.Add(dur)).Round(time.Millisecond))
	fmt.Fprintf(&r, "wrong decisions: %d; transport errors: %d; other statuses: %d; 503 during the restart: %d, outside it: %d\n",
		nWrong, nErr, nOther, n503In, n503Out)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range groups {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range names {
		g := groups[k]
		fmt.Fprintf(&r, "  %-27s %6d requests: %6d allowed, %6d denied, %4d 503, %4d in a change's window", k, g.n, g.allowed, g.denied, g.unavailable, g.window)
		if d, ok := latestAllow[k]; ok {
			fmt.Fprintf(&r, "; last allowed sent %v after the change", d.Round(time.Millisecond))
		}
		r.WriteString("\n")
	}
	for i, name := range []string{"gateway 0", "gateway 1", "all"} {
		l := lat[i]
		slices.Sort(l)
		if len(l) == 0 {
			continue
		}
		q := func(p float64) time.Duration {
			return l[min(len(l)-1, int(p*float64(len(l))))].Round(10 * time.Microsecond)
		}
		fmt.Fprintf(&r, "latency %-9s p50 %v, p90 %v, p99 %v, max %v (%d)\n", name, q(.5), q(.9), q(.99), l[len(l)-1].Round(10*time.Microsecond), len(l))
	}
	r.WriteString("timeline:\n")
	for _, l := range timeline {
		r.WriteString("  " + l + "\n")
	}
	fmt.Fprintf(&r, "PostgreSQL down %.1fs–%.1fs\n", restartFrom.Sub(start).Seconds(), restartTo.Sub(start).Seconds())
	r.WriteString("     t   goroutines (gw0 gw1)   heap in use MiB   RSS MiB      open streams\n")
	mib := func(v float64) float64 { return v / (1 << 20) }
	for _, g := range gauges {
		if g.scrapeErr[0] != nil || g.scrapeErr[1] != nil {
			fmt.Fprintf(&r, "  %4.0fs  scrape failed: %v %v\n", g.at.Seconds(), g.scrapeErr[0], g.scrapeErr[1])
			continue
		}
		fmt.Fprintf(&r, "  %4.0fs  %6.0f %6.0f        %6.1f %6.1f     %6.1f %6.1f   %4.0f %4.0f\n", g.at.Seconds(),
			g.goroutines[0], g.goroutines[1], mib(g.heap[0]), mib(g.heap[1]), mib(g.rss[0]), mib(g.rss[1]), g.streams[0], g.streams[1])
	}
	fmt.Fprintf(&r, "goroutines idle before the load: %v %v; under load at %v: %v %v; idle after it: %v %v\n",
		before.goroutines[0], before.goroutines[1], early.at, early.goroutines[0], early.goroutines[1], settled[0], settled[1])
	// The trend, for long runs: the first third's means against the last's.
	third := func(from, to float64, v func(soakGauges) float64) float64 {
		var sum, n float64
		for _, g := range gauges {
			if fr := g.at.Seconds() / dur.Seconds(); fr >= from && fr <= to && g.scrapeErr[0] == nil && g.scrapeErr[1] == nil {
				sum, n = sum+v(g), n+1
			}
		}
		return sum / max(n, 1)
	}
	for i := range gws {
		fmt.Fprintf(&r, "gateway %d, first third → last third of the run: heap in use %.1f → %.1f MiB, RSS %.1f → %.1f MiB, goroutines %.0f → %.0f\n", i,
			mib(third(0, 1.0/3, func(g soakGauges) float64 { return g.heap[i] })), mib(third(2.0/3, 1, func(g soakGauges) float64 { return g.heap[i] })),
			mib(third(0, 1.0/3, func(g soakGauges) float64 { return g.rss[i] })), mib(third(2.0/3, 1, func(g soakGauges) float64 { return g.rss[i] })),
			third(0, 1.0/3, func(g soakGauges) float64 { return g.goroutines[i] }), third(2.0/3, 1, func(g soakGauges) float64 { return g.goroutines[i] }))
	}
	t.Log("\n" + r.String())
	if out := os.Getenv("SOAK_REPORT"); out != "" {
		os.WriteFile(out, []byte(r.String()), 0o644)
	}

	for _, w := range wrong {
		t.Error(w)
	}
	if nWrong > 0 || nErr > 0 {
		t.Errorf("%d wrong decisions, %d transport errors", nWrong, nErr)
	}
	for _, k := range []string{gRev1, gRev2, gExp1, gExp2} {
		if g := groups[k]; g == nil || g.allowed == 0 || g.denied == 0 {
			t.Errorf("%s: the run saw no allowed or no denied answer (%+v); too short or too slow to test the change", k, g)
		}
	}
}

// soakEarly is the first sample a tenth of the run in, past the start-up.
func soakEarly(gauges []soakGauges, dur time.Duration) soakGauges {
	for _, g := range gauges {
		if g.at >= dur/10 && g.scrapeErr[0] == nil && g.scrapeErr[1] == nil {
			return g
		}
	}
	return soakGauges{}
}

// soakRSS reads a process's resident set size, in bytes, from /proc.
func soakRSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024
		}
	}
	return 0
}

func soakEnvDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s %q: a duration such as 60s", name, s)
	}
	return d
}
