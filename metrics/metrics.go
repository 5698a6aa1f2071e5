// Package metrics counts what the gateway does, as Prometheus metrics: the
// decisions of each front end, which cache tier answered, how long the
// backends took and how they failed, the revocations heard, the watched
// streams, and the usage and rate-limit decisions. It has no Caddy in it:
// the Caddy module registers one Set on Caddy's registry
// (ctx.GetMetricsRegistry()), the standalone ext_authz server on its own.
//
// Labels are bounded: a front end's name, a method, a decision's code, a
// tier, a backend, an error kind, a source. Never a key, a token, a user
// id or a path.
//
// The counters on the request path are resolved once and kept in arrays
// indexed by method and reason, so that counting a decision is an atomic
// add and allocates nothing.
package metrics

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Namespaces of the families: Caddy's modules prefix theirs with caddy_.
const (
	CaddyNamespace      = "caddy_better_auth"
	StandaloneNamespace = "better_auth"
)

// Front ends, the values of the front_end label.
const (
	FrontCaddy    = "caddy"     // the http.handlers.better_auth handler
	FrontExtAuthz = "ext_authz" // the ext_authz server, in Caddy or on its own
)

// Tier is who answered a lookup, the tier label of cache_answers_total.
type Tier uint8

// Tiers.
const (
	// TierMemory: a fresh entry of the in-process cache.
	TierMemory Tier = iota
	// TierStale: an expired entry served while it is refreshed
	// (stale_while_revalidate) or while the database fails (stale_if_error).
	TierStale
	// TierNegative: a remembered unknown credential.
	TierNegative
	// TierShared: the shared Redis tier, on an in-process miss.
	TierShared
	// TierDatabase: the store behind the caches (the database, through
	// secondary storage when configured).
	TierDatabase
	numTiers
)

var tierNames = [numTiers]string{"memory", "stale", "negative", "shared", "database"}

// String returns the label value.
func (t Tier) String() string {
	if t >= numTiers {
		return "unknown"
	}
	return tierNames[t]
}

// Backend is what a lookup was timed against, the backend label.
type Backend uint8

// Backends.
const (
	BackendPostgres Backend = iota
	BackendSQLite
	BackendMySQL
	// BackendRedis is the shared cache tier.
	BackendRedis
	// BackendSecondary is a lookup through Better-Auth's secondary
	// storage, its database fallback included.
	BackendSecondary
	numBackends
)

var backendNames = [numBackends]string{"postgresql", "sqlite", "mysql", "redis", "secondary_storage"}

// String returns the label value.
func (b Backend) String() string {
	if b >= numBackends {
		return "unknown"
	}
	return backendNames[b]
}

// Error kinds, the kind label of lookup_errors_total.
const (
	kindTimeout = iota
	kindCanceled
	kindError
	numKinds
)

var kindNames = [numKinds]string{"timeout", "canceled", "error"}

// Source is where a revocation came from, the source label.
type Source uint8

// Sources.
const (
	// SourceTrigger: PostgreSQL's LISTEN/NOTIFY, from the gateway's
	// triggers.
	SourceTrigger Source = iota
	// SourceRelay: another gateway, over the shared Redis.
	SourceRelay
	// SourceKeyspace: Redis keyspace notifications of secondary storage.
	SourceKeyspace
	numSources
)

var sourceNames = [numSources]string{"trigger", "relay", "keyspace"}

// String returns the label value.
func (s Source) String() string {
	if s >= numSources {
		return "unknown"
	}
	return sourceNames[s]
}

// Ended is why a watched stream ended, the why label of
// streams_ended_total.
type Ended uint8

// Why streams end.
const (
	EndedDone    Ended = iota // the request finished
	EndedRevoked              // its credential was revoked
	EndedExpired              // its credential expired
	numEnded
)

var endedNames = [numEnded]string{"done", "revoked", "expired"}

// Usage modes, the mode label of usage_decisions_total.
const (
	UsageDatabase = "database"
	UsageRedis    = "redis"
)

// numMethods bounds betterauth.Method.
const numMethods = int(betterauth.MethodOAuth) + 1

// Set is one set of families. Its methods may be called on a nil *Set:
// they count nothing.
type Set struct {
	decisions       *prometheus.CounterVec
	cacheAnswers    *prometheus.CounterVec
	lookupDuration  *prometheus.HistogramVec
	lookupErrors    *prometheus.CounterVec
	revocations     *prometheus.CounterVec
	revocationDelay *prometheus.HistogramVec
	streamsOpen     prometheus.Gauge
	streamsEnded    *prometheus.CounterVec
	usage           *prometheus.CounterVec
	rateLimit       *prometheus.CounterVec
	auditEvents     *prometheus.CounterVec

	tiers     [numTiers]prometheus.Counter
	durations [numBackends]prometheus.Observer
	errs      [numBackends][numKinds]prometheus.Counter
	revs      [numSources]prometheus.Counter
	delays    [numSources]prometheus.Observer
	limited   [2]prometheus.Counter
	audited   [2]prometheus.Counter // written, dropped
	ended     [numEnded]prometheus.Counter
}

// New returns a Set whose families are named namespace_*
// (CaddyNamespace in Caddy). Register it on a registry to expose them.
func New(namespace string) *Set {
	s := &Set{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "decisions_total",
			Help: "Requests decided, by front end, authentication method (empty when none verified) and code (OK when allowed).",
		}, []string{"front_end", "method", "code"}),
		cacheAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_answers_total",
			Help: "Credential lookups answered, by tier: memory, stale, negative, shared (Redis) or database (one per lookup run: concurrent misses share one).",
		}, []string{"tier"}),
		lookupDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "lookup_duration_seconds",
			Help:    "Duration of the lookups the caches could not answer, by backend.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"backend"}),
		lookupErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "lookup_errors_total",
			Help: "Lookups that failed, by backend and kind: timeout, canceled or error.",
		}, []string{"backend", "kind"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "revocations_total",
			Help: "Invalidations received, by source: trigger (PostgreSQL NOTIFY), relay (another gateway) or keyspace (secondary storage).",
		}, []string{"source"}),
		revocationDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "revocation_delay_seconds",
			Help:    "Time from an invalidation's sending to its receipt, where the message carries when it was sent (relay).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"source"}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "streams_open",
			Help: "Allowed requests in flight, watched so that a revocation ends them.",
		}),
		streamsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "streams_ended_total",
			Help: "Watched requests ended, by why: done, revoked or expired.",
		}, []string{"why"}),
		usage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "usage_decisions_total",
			Help: "API-key uses counted, by mode (database or redis) and code (OK, USAGE_EXCEEDED, RATE_LIMITED, ERROR).",
		}, []string{"mode", "code"}),
		rateLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "rate_limit_decisions_total",
			Help: "Requests the routes' rate_limit tiers judged, by outcome: allowed or limited.",
		}, []string{"outcome"}),
		auditEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "audit_events_total",
			Help: "Audit events bound for the database, by outcome: written, or dropped (the queue full, or the database refusing them).",
		}, []string{"outcome"}),
	}
	for t := range numTiers {
		s.tiers[t] = s.cacheAnswers.WithLabelValues(t.String())
	}
	for b := range numBackends {
		s.durations[b] = s.lookupDuration.WithLabelValues(b.String())
		for k := range numKinds {
			s.errs[b][k] = s.lookupErrors.WithLabelValues(b.String(), kindNames[k])
		}
	}
	for src := range numSources {
		s.revs[src] = s.revocations.WithLabelValues(src.String())
		s.delays[src] = s.revocationDelay.WithLabelValues(src.String())
	}
	for e := range numEnded {
		s.ended[e] = s.streamsEnded.WithLabelValues(endedNames[e])
	}
	s.limited[0] = s.rateLimit.WithLabelValues("allowed")
	s.limited[1] = s.rateLimit.WithLabelValues("limited")
	s.audited[0] = s.auditEvents.WithLabelValues("written")
	s.audited[1] = s.auditEvents.WithLabelValues("dropped")
	return s
}

// Collectors are the Set's families.
func (s *Set) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.decisions, s.cacheAnswers, s.lookupDuration, s.lookupErrors,
		s.revocations, s.revocationDelay, s.streamsOpen, s.streamsEnded, s.usage, s.rateLimit, s.auditEvents}
}

// Register registers the families on reg. A family already registered
// there (by another module of the same config) is not an error: the Set
// is meant to be shared, and to outlive registries (Caddy makes one per
// config load).
func (s *Set) Register(reg prometheus.Registerer) error {
	for _, c := range s.Collectors() {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) && already.ExistingCollector == c {
				continue
			}
			return err
		}
	}
	return nil
}

// Decisions returns the counter of a front end's decisions, a
// betterauth.Observer; nil for a nil Set.
func (s *Set) Decisions(frontEnd string) *Decisions {
	if s == nil {
		return nil
	}
	return &Decisions{vec: s.decisions, front: frontEnd}
}

// Decisions counts one front end's decisions. Each (method, reason)
// counter is resolved on first use and kept: later counts allocate
// nothing.
type Decisions struct {
	vec   *prometheus.CounterVec
	front string
	cells [numMethods][betterauth.NumReasons]atomic.Pointer[counter]
}

type counter struct{ prometheus.Counter }

// Decided implements betterauth.Observer.
func (d *Decisions) Decided(m betterauth.Method, r betterauth.Reason) {
	if int(m) >= numMethods || int(r) >= betterauth.NumReasons {
		m, r = betterauth.MethodNone, betterauth.BackendUnavailable
	}
	cell := &d.cells[m][r]
	if c := cell.Load(); c != nil {
		c.Inc()
		return
	}
	d.resolve(cell, m, r).Inc()
}

// resolve finds a cell's counter; racing callers find the same one.
func (d *Decisions) resolve(cell *atomic.Pointer[counter], m betterauth.Method, r betterauth.Reason) *counter {
	c := &counter{d.vec.WithLabelValues(d.front, m.String(), r.String())}
	cell.CompareAndSwap(nil, c)
	return cell.Load()
}

// Answered counts a lookup answered by tier t.
func (s *Set) Answered(t Tier) {
	if s != nil && t < numTiers {
		s.tiers[t].Inc()
	}
}

// Looked records a lookup against b that took took and failed with err
// (nil for none). A record not found is not an error.
func (s *Set) Looked(b Backend, took time.Duration, err error) {
	if s == nil || b >= numBackends {
		return
	}
	s.durations[b].Observe(took.Seconds())
	if err != nil {
		s.errs[b][kindOf(err)].Inc()
	}
}

// kindOf classifies a lookup's error: a deadline, the caller's or a
// client's own (a Redis or PostgreSQL read timeout), is a timeout.
func kindOf(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case errors.Is(err, context.Canceled):
		return kindCanceled
	}
	return kindError
}

// Revoked counts n invalidations from src; delay, when positive, is how
// long they took to arrive.
func (s *Set) Revoked(src Source, n int, delay time.Duration) {
	if s == nil || src >= numSources || n <= 0 {
		return
	}
	s.revs[src].Add(float64(n))
	if delay > 0 {
		s.delays[src].Observe(delay.Seconds())
	}
}

// StreamOpened counts a watched request starting.
func (s *Set) StreamOpened() {
	if s != nil {
		s.streamsOpen.Inc()
	}
}

// StreamEnded counts a watched request ending, for why.
func (s *Set) StreamEnded(why Ended) {
	if s != nil && why < numEnded {
		s.streamsOpen.Dec()
		s.ended[why].Inc()
	}
}

// Used counts a usage decision of mode: r is the meter's reason, err its
// failure.
func (s *Set) Used(mode string, r betterauth.Reason, err error) {
	if s == nil {
		return
	}
	code := r.String()
	if err != nil {
		code = "ERROR"
	}
	s.usage.WithLabelValues(mode, code).Inc()
}

// Limited counts a rate-limit decision.
func (s *Set) Limited(limited bool) {
	if s == nil {
		return
	}
	if limited {
		s.limited[1].Inc()
	} else {
		s.limited[0].Inc()
	}
}

// AuditWritten counts n audit events written to the database.
func (s *Set) AuditWritten(n int) {
	if s != nil {
		s.audited[0].Add(float64(n))
	}
}

// AuditDropped counts n audit events lost on their way to the database.
func (s *Set) AuditDropped(n int) {
	if s != nil {
		s.audited[1].Add(float64(n))
	}
}
