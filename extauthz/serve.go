package extauthz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Listeners say where the ext_authz service is served: the settings the
// better_auth app and the standalone server add to a gateway's.
type Listeners struct {
	// Address of the ext_authz gRPC listener, e.g. 127.0.0.1:9191. It also
	// serves grpc.health.v1.
	GRPC string `json:"grpc,omitempty"`
	// Address of the HTTP-mode listener, e.g. 127.0.0.1:9192, for Envoy's
	// http_service and forward-auth callers. Every request to it is a
	// decision, whatever its path: there is no health path a client could
	// reach through Envoy and be let through with.
	HTTP string `json:"http,omitempty"`
	// PEM certificate and key files: serve the gRPC listener over TLS.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
}

// Validate checks that something is served and that TLS has both files.
func (l Listeners) Validate() error {
	if l.GRPC == "" && l.HTTP == "" {
		return errors.New("nothing to serve: set grpc or http, the addresses to serve ext_authz on")
	}
	if (l.TLSCert == "") != (l.TLSKey == "") {
		return errors.New("tls needs both a certificate and a key")
	}
	return nil
}

// Serving is the ext_authz service running on its listeners.
type Serving struct {
	grpc   *grpc.Server
	http   *http.Server
	lns    []net.Listener
	errs   chan error
	logger *zap.Logger
}

// Serve starts serving s on l's addresses, each opened with listen (Caddy's
// listeners, which survive config reloads, or net.Listen). Stop it when
// done; Err reports a listener that stopped serving on its own.
func (l Listeners) Serve(s *Server, listen func(addr string) (net.Listener, error), logger *zap.Logger) (*Serving, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	sv := &Serving{errs: make(chan error, 2), logger: logger}
	var gln, hln net.Listener
	var opts []grpc.ServerOption
	if l.GRPC != "" && l.TLSCert != "" {
		creds, err := credentials.NewServerTLSFromFile(l.TLSCert, l.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		opts = append(opts, grpc.Creds(creds))
	}
	for _, p := range []struct {
		addr string
		ln   *net.Listener
	}{{l.GRPC, &gln}, {l.HTTP, &hln}} {
		if p.addr == "" {
			continue
		}
		ln, err := listen(p.addr)
		if err != nil {
			sv.closeListeners()
			return nil, fmt.Errorf("listening on %s: %w", p.addr, err)
		}
		*p.ln = ln
		sv.lns = append(sv.lns, ln)
	}
	if gln != nil {
		sv.grpc = NewGRPCServer(s, opts...)
		go sv.serve("gRPC", func() error { return sv.grpc.Serve(gln) })
		logger.Info("serving ext_authz gRPC", zap.String("address", gln.Addr().String()))
	}
	if hln != nil {
		// DisableGeneralOptionsHandler: net/http would answer "OPTIONS *"
		// 200 itself, a pass for a caller that asks it without a credential.
		sv.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10, DisableGeneralOptionsHandler: true}
		go sv.serve("HTTP", func() error { return sv.http.Serve(hln) })
		logger.Info("serving ext_authz HTTP", zap.String("address", hln.Addr().String()))
	}
	return sv, nil
}

// serve runs one server, reporting an unexpected end.
func (sv *Serving) serve(what string, run func() error) {
	err := run()
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return
	}
	sv.logger.Error("ext_authz "+what+" listener stopped", zap.Error(err))
	sv.errs <- fmt.Errorf("ext_authz %s: %w", what, err)
}

// Err reports a listener that stopped serving on its own.
func (sv *Serving) Err() <-chan error { return sv.errs }

// Stop stops serving, letting calls in flight finish until ctx ends.
func (sv *Serving) Stop(ctx context.Context) error {
	var errs []error
	if sv.http != nil {
		if err := sv.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the HTTP listener: %w", err))
		}
	}
	if sv.grpc != nil {
		GracefulStop(ctx, sv.grpc)
	}
	errs = append(errs, sv.closeListeners())
	err := errors.Join(errs...)
	if err != nil {
		sv.logger.Warn("stopping ext_authz", zap.Error(err))
	}
	return err
}

func (sv *Serving) closeListeners() error {
	var errs []error
	for _, ln := range sv.lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NewGRPCServer returns a gRPC server with the ext_authz service and the
// grpc.health.v1 service reporting it as serving.
func NewGRPCServer(s *Server, opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	return gs
}

// GracefulStop stops gs, letting calls in flight finish until ctx ends.
func GracefulStop(ctx context.Context, gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		gs.Stop()
	}
}
