// Command betterauth-extauthz is the Envoy external authorization server of
// caddy-betterauth, on its own: the envoy.service.auth.v3.Authorization gRPC
// service (with grpc.health.v1) and the HTTP mode for Envoy's http_service
// and forward-auth callers, over the same checks as the Caddy handler.
//
//	DATABASE_URL=postgres://... BETTER_AUTH_SECRET=... betterauth-extauthz -grpc 127.0.0.1:9191 -http 127.0.0.1:9192
//
// The database URL and the secret come from the environment, so that they
// stay out of process lists.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/cache"
	"github.com/caddy-betterauth/caddy-betterauth/extauthz"
	"github.com/caddy-betterauth/caddy-betterauth/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "betterauth-extauthz:", err)
		os.Exit(1)
	}
}

func run() error {
	grpcAddr := flag.String("grpc", "127.0.0.1:9191", "gRPC listen address (empty: off)")
	httpAddr := flag.String("http", "127.0.0.1:9192", "HTTP listen address (empty: off)")
	prefixes := flag.String("api-key-prefix", "", "comma-separated API-key prefixes")
	keep := flag.Bool("keep-credential", false, "forward the credential upstream")
	ttl := flag.Duration("cache-ttl", cache.DefaultTTL, "how long a verified record is cached")
	timeout := flag.Duration("lookup-timeout", cache.DefaultLookupTimeout, "bound on one database lookup; then 503")
	tlsCert := flag.String("tls-cert", "", "PEM certificate for the gRPC listener (with -tls-key): serve TLS")
	tlsKey := flag.String("tls-key", "", "PEM private key for the gRPC listener")
	flag.Parse()

	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("set DATABASE_URL")
	}
	logger, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer logger.Sync()
	db, err := store.Open(dsn, store.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer db.Close()
	verifier, err := betterauth.NewVerifier(betterauth.Options{
		Store:  cache.New(db, cache.Options{TTL: *ttl, LookupTimeout: *timeout, Logger: logger}),
		Secret: os.Getenv("BETTER_AUTH_SECRET"),
	})
	if err != nil {
		return err
	}
	var pfx []string
	if *prefixes != "" {
		pfx = strings.Split(*prefixes, ",")
	}
	srv := extauthz.New(extauthz.Options{
		Verifier: verifier, Extract: betterauth.ExtractorConfig{APIKeyPrefixes: pfx}, KeepCredential: *keep, Logger: logger,
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errs := make(chan error, 2)
	var gs *grpc.Server
	if *grpcAddr != "" {
		lis, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			return err
		}
		var opts []grpc.ServerOption
		if *tlsCert != "" || *tlsKey != "" {
			creds, err := credentials.NewServerTLSFromFile(*tlsCert, *tlsKey)
			if err != nil {
				return fmt.Errorf("tls: %w", err)
			}
			opts = append(opts, grpc.Creds(creds))
		}
		gs = extauthz.NewGRPCServer(srv, opts...)
		go func() { errs <- gs.Serve(lis) }()
		logger.Info("serving ext_authz gRPC", zap.String("address", lis.Addr().String()))
	}
	var hsrv *http.Server
	if *httpAddr != "" {
		lis, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
		mux.Handle("/", srv)
		hsrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
		go func() { errs <- hsrv.Serve(lis) }()
		logger.Info("serving ext_authz HTTP", zap.String("address", lis.Addr().String()))
	}
	if gs == nil && hsrv == nil {
		return errors.New("nothing to serve: -grpc and -http are both empty")
	}

	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if hsrv != nil {
		hsrv.Shutdown(sctx)
	}
	if gs != nil {
		extauthz.GracefulStop(sctx, gs)
	}
	return nil
}
