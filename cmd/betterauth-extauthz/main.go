// Command betterauth-extauthz is the Envoy external authorization server of
// caddy-betterauth, on its own: the envoy.service.auth.v3.Authorization gRPC
// service (with grpc.health.v1) and the HTTP mode for Envoy's http_service
// and forward-auth callers. It is the same gateway as the Caddy module,
// assembled by package gateway: every option of a better_auth block (redis,
// secondary_storage, the revocation listener, schema, cookies...), read
// from the JSON the better_auth Caddy app takes.
//
//	betterauth-extauthz -config gateway.json
//	DATABASE_URL=postgres://... BETTER_AUTH_SECRET=... betterauth-extauthz -grpc 127.0.0.1:9191 -http 127.0.0.1:9192
//
// With -metrics (or "metrics" in the config), Prometheus metrics are
// served at /metrics on that address: the better_auth_* families (see the
// README's Metrics section) with the Go and process collectors.
//
// With the standard OpenTelemetry environment set (OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER), every
// decision is traced in a span continuing the caller's trace context.
//
// In the config file, {env.NAME} placeholders are replaced by environment
// variables (any other placeholder there is an error); database and secret
// default to DATABASE_URL and BETTER_AUTH_SECRET, so that they stay out of
// files and process lists.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/extauthz"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return // the usage is printed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "betterauth-extauthz:", err)
		os.Exit(1)
	}
}

// Config is the better_auth app's JSON: a gateway's settings and the
// addresses to serve on.
type Config struct {
	gateway.Options
	extauthz.Listeners
	// Address of the Prometheus listener (/metrics), e.g. 127.0.0.1:9193;
	// empty: none.
	Metrics string `json:"metrics,omitempty"`
}

// load reads the configuration: the file, then the flags set on the
// command line, then the environment for what is still missing.
func load(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("betterauth-extauthz", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the better_auth app's JSON settings (database, secret, redis, secondary_storage, grpc, http...)")
	grpcAddr := fs.String("grpc", "127.0.0.1:9191", "gRPC listen address (empty: off)")
	httpAddr := fs.String("http", "127.0.0.1:9192", "HTTP listen address (empty: off)")
	prefixes := fs.String("api-key-prefix", "", "comma-separated API-key prefixes")
	keep := fs.Bool("keep-credential", false, "forward the credential upstream")
	ttl := fs.Duration("cache-ttl", 0, "how long a verified record is cached (default 15s)")
	timeout := fs.Duration("lookup-timeout", 0, "bound on one database lookup; then 503 (default 3s)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate for the gRPC listener (with -tls-key): serve TLS")
	tlsKey := fs.String("tls-key", "", "PEM private key for the gRPC listener")
	metricsAddr := fs.String("metrics", "", "Prometheus metrics listen address, serving /metrics (empty: off)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var cfg Config
	if *path != "" {
		raw, err := os.ReadFile(*path)
		if err != nil {
			return Config{}, err
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return Config{}, fmt.Errorf("%s: %w", *path, err)
		}
		// One value, as Caddy reads it: settings after it would be ignored.
		if dec.Decode(new(json.RawMessage)) != io.EOF {
			return Config{}, fmt.Errorf("%s: more after the settings object", *path)
		}
	} else {
		cfg.GRPC, cfg.HTTP = *grpcAddr, *httpAddr
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["grpc"] {
		cfg.GRPC = *grpcAddr
	}
	if set["http"] {
		cfg.HTTP = *httpAddr
	}
	if set["api-key-prefix"] {
		cfg.APIKeyPrefixes = nil
		if *prefixes != "" {
			cfg.APIKeyPrefixes = strings.Split(*prefixes, ",")
		}
	}
	if set["keep-credential"] {
		cfg.KeepCredential = *keep
	}
	if set["cache-ttl"] {
		if cfg.Cache == nil {
			cfg.Cache = &gateway.Cache{}
		}
		cfg.Cache.TTL = gateway.Duration(*ttl)
	}
	if set["lookup-timeout"] {
		cfg.LookupTimeout = gateway.Duration(*timeout)
	}
	if set["metrics"] {
		cfg.Metrics = *metricsAddr
	}
	if set["tls-cert"] || set["tls-key"] {
		cfg.TLSCert, cfg.TLSKey = *tlsCert, *tlsKey
	}
	if cfg.Database == "" {
		cfg.Database = "{env.DATABASE_URL}"
	}
	if cfg.Secret == "" {
		cfg.Secret = "{env.BETTER_AUTH_SECRET}"
	}
	if err := cfg.Options.Validate(); err != nil {
		return Config{}, err
	}
	if err := cfg.Listeners.Validate(); err != nil {
		return Config{}, err
	}
	other := false
	cfg.Options = cfg.Resolve(func(s string) string {
		other = other || otherPlaceholder(s)
		return gateway.ExpandEnv(s, getenv)
	})
	if other {
		// Caddy replaces it ({file.…} reads a file); kept as text, a secret
		// would be its own name, and so would the key sealing the shared
		// Redis entries. Its value is not repeated: it may be a secret.
		return Config{}, errors.New("database, secret, a Redis URL or the redis key holds a placeholder other than {env.NAME} " +
			"(such as {file.…}), which Caddy replaces and betterauth-extauthz cannot")
	}
	if cfg.Database == "" {
		return Config{}, errors.New("no database: set database in the config, or DATABASE_URL")
	}
	return cfg, nil
}

// otherPlaceholder reports whether s, as written, holds a placeholder
// other than {env.NAME}: like Caddy, any "{" followed by a "}".
func otherPlaceholder(s string) bool {
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return false
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return false
		}
		if !strings.HasPrefix(s[i:i+j], "{env.") {
			return true
		}
		s = s[i+j+1:]
	}
}

// run serves until ctx ends or a listener fails.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := load(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	var metricsErr <-chan error
	if cfg.Metrics != "" {
		set := metrics.New(metrics.StandaloneNamespace)
		cfg.Options.Metrics, cfg.Options.FrontEnd = set, metrics.FrontExtAuthz
		stop, errs, err := serveMetrics(cfg.Metrics, set, logger)
		if err != nil {
			return err
		}
		defer stop()
		metricsErr = errs
	}
	gw, err := gateway.Open(cfg.Options, logger)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := gw.Close(); cerr != nil {
			logger.Warn("closing the gateway", zap.Error(cerr))
		}
	}()
	gate, err := gw.Gate(cfg.Options, logger)
	if err != nil {
		return err
	}
	guard, err := cfg.Options.Guard(gate, false) // ext_authz sees no response: no sessions
	if err != nil {
		return err
	}
	trail, _, err := gw.Auditor(cfg.Options, logger) // gw.Close closes its sink
	if err != nil {
		return err
	}
	opts := []extauthz.Option{extauthz.WithMCP(guard), extauthz.WithAudit(trail)}
	traced, stopTracing, err := tracing(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer stopTracing()
	if traced != nil {
		opts = append(opts, traced)
	}
	listen := func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	sv, err := cfg.Listeners.Serve(extauthz.New(gate, opts...), listen, logger)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		err = nil
	case err = <-sv.Err():
	case err = <-metricsErr:
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = sv.Stop(sctx) // logs what it could not stop
	return err
}

// serveMetrics serves set, with the Go and process collectors, at
// /metrics on addr until stop is called; errs reports a listener that
// failed.
func serveMetrics(addr string, set *metrics.Set, logger *zap.Logger) (stop func(), errs <-chan error, err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := set.Register(reg); err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ch := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			ch <- fmt.Errorf("metrics: %w", err)
		}
	}()
	logger.Info("serving metrics", zap.String("address", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, ch, nil
}
