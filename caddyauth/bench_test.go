package caddyauth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

type nopNext struct{}

func (nopNext) ServeHTTP(http.ResponseWriter, *http.Request) error { return nil }

// benchRequests runs serve on a request as Caddy hands it over: a fresh
// header map and replacer each time, as every real request has.
func benchRequests(b *testing.B, serve func(w http.ResponseWriter, r *http.Request)) {
	base := httptest.NewRequest(http.MethodGet, "/mcp", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		repl := caddy.NewReplacer()
		r := base.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl))
		r.Header = http.Header{"X-Api-Key": {testKey}, "Accept": {"text/event-stream"}, "X-Auth-User-Id": {"forged"}}
		serve(w, r)
	}
}

// What the setup itself costs; subtract it from the handler's figures.
func BenchmarkRequestSetupOnly(b *testing.B) {
	benchRequests(b, func(http.ResponseWriter, *http.Request) {})
}

// The handler's whole cost on a cached API key with keep_revoked_streams:
// stripping, extraction, the cached check, identity headers, placeholders,
// credential removal, Connection and trailer checks.
func BenchmarkServeHTTPAPIKeyHit(b *testing.B) {
	h := newHandler(b, &Handler{}, cache.New(newFakeStore(), cache.Options{}))
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r, nopNext{}) })
}

// The same as configured by default: every allowed request is tied to its
// credential's life.
func BenchmarkServeHTTPAPIKeyHitWatched(b *testing.B) {
	h := newHandler(b, &Handler{}, cache.New(newFakeStore(), cache.Options{}))
	h.streams = gateway.NewStreams()
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r, nopNext{}) })
}

// The two above with metrics on: decisions, cache tiers and (watched)
// streams counted.
func BenchmarkServeHTTPAPIKeyHitMetrics(b *testing.B) {
	m := metrics.New("bench")
	h := newHandler(b, &Handler{Options: gateway.Options{Metrics: m, FrontEnd: metrics.FrontCaddy}},
		cache.New(newFakeStore(), cache.Options{Metrics: m}))
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r, nopNext{}) })
}

func BenchmarkServeHTTPAPIKeyHitWatchedMetrics(b *testing.B) {
	m := metrics.New("bench")
	h := newHandler(b, &Handler{Options: gateway.Options{Metrics: m, FrontEnd: metrics.FrontCaddy}},
		cache.New(newFakeStore(), cache.Options{Metrics: m}))
	h.streams = gateway.NewCountedStreams(m)
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r, nopNext{}) })
}

// With an audit trail recording every decision: as JSON to a discarded
// writer (what encoding an event costs; Caddy's file writer adds the
// write), and queued for a database sink whose writes are dropped.
func BenchmarkServeHTTPAPIKeyHitAudited(b *testing.B) {
	h := newHandler(b, &Handler{}, cache.New(newFakeStore(), cache.Options{}))
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	logger := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zap.InfoLevel))
	sink := audit.NewSink(discardWriter{}, audit.SinkOptions{})
	defer sink.Close()
	h.audit, h.frontEnd = audit.NewLog(audit.All, logger, sink), metrics.FrontCaddy
	benchRequests(b, func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r, nopNext{}) })
}

type discardWriter struct{}

func (discardWriter) Write(context.Context, []audit.Event) error { return nil }
func (discardWriter) Close() error                               { return nil }
