package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/extauthz"
)

func init() {
	caddy.RegisterModule(App{})
	httpcaddyfile.RegisterGlobalOption("better_auth", parseGlobalOption)
}

// App serves the Envoy front end from inside Caddy: the ext_authz gRPC
// service (with grpc.health.v1) and the HTTP mode for Envoy's http_service
// and forward-auth callers. It takes the same settings as the better_auth
// handler, and a handler configured alike shares its database pool and
// cache, so one Caddy serves both front ends.
type App struct {
	// The gateway's settings, as for the handler: database, secret, cache,
	// redis, schema...
	Handler

	// Address of the ext_authz gRPC listener, e.g. 127.0.0.1:9191.
	GRPC string `json:"grpc,omitempty"`
	// Address of the HTTP-mode listener, e.g. 127.0.0.1:9192.
	HTTP string `json:"http,omitempty"`
	// PEM certificate and key files: serve the gRPC listener over TLS.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`

	srv     *extauthz.Server
	ctx     caddy.Context
	grpcSrv *grpc.Server
	httpSrv *http.Server
	appLog  *zap.Logger
	closers []net.Listener
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "better_auth", New: func() caddy.Module { return new(App) }}
}

// Provision sets the app up, sharing the backend with handlers configured
// alike. It does no network I/O.
func (a *App) Provision(ctx caddy.Context) error {
	if a.GRPC == "" && a.HTTP == "" {
		return errors.New("better_auth app: set grpc or http, the addresses to serve ext_authz on")
	}
	if err := a.Handler.Provision(ctx); err != nil {
		return err
	}
	a.ctx, a.appLog = ctx, ctx.Logger()
	a.srv = extauthz.New(extauthz.Options{
		Verifier:       a.verifier,
		Extract:        betterauth.ExtractorConfig{APIKeyHeaders: a.APIKeyHeaders, APIKeyPrefixes: a.APIKeyPrefixes, RequireSignature: a.RequireSignature, CookieNames: betterauth.SessionCookieNames(a.CookiePrefix, a.CookieName)},
		CookiePrefix:   a.CookiePrefix,
		KeepCredential: a.KeepCredential,
		Realm:          a.Realm,
		Logger:         a.appLog,
	})
	return nil
}

// listen opens a listener through Caddy, so that it survives reloads.
func (a *App) listen(addr string) (net.Listener, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	ln, err := na.Listen(a.ctx, 0, net.ListenConfig{})
	if err != nil {
		return nil, err
	}
	l, ok := ln.(net.Listener)
	if !ok {
		return nil, fmt.Errorf("address %q is not a stream listener", addr)
	}
	a.closers = append(a.closers, l)
	return l, nil
}

// Start serves.
func (a *App) Start() error {
	if a.GRPC != "" {
		ln, err := a.listen(a.GRPC)
		if err != nil {
			return err
		}
		var opts []grpc.ServerOption
		if a.TLSCert != "" || a.TLSKey != "" {
			creds, err := credentials.NewServerTLSFromFile(a.TLSCert, a.TLSKey)
			if err != nil {
				return fmt.Errorf("better_auth app: tls: %w", err)
			}
			opts = append(opts, grpc.Creds(creds))
		}
		a.grpcSrv = extauthz.NewGRPCServer(a.srv, opts...)
		go a.grpcSrv.Serve(ln)
		a.appLog.Info("serving ext_authz gRPC", zap.String("address", ln.Addr().String()))
	}
	if a.HTTP != "" {
		ln, err := a.listen(a.HTTP)
		if err != nil {
			return err
		}
		a.httpSrv = &http.Server{Handler: a.srv, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
		go a.httpSrv.Serve(ln)
		a.appLog.Info("serving ext_authz HTTP", zap.String("address", ln.Addr().String()))
	}
	return nil
}

// Stop stops serving, letting calls in flight finish for a few seconds.
func (a *App) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a.httpSrv != nil {
		a.httpSrv.Shutdown(ctx)
	}
	if a.grpcSrv != nil {
		extauthz.GracefulStop(ctx, a.grpcSrv)
	}
	for _, l := range a.closers {
		l.Close()
	}
	return nil
}

// Cleanup releases the shared backend.
func (a *App) Cleanup() error { return a.Handler.Cleanup() }

// parseGlobalOption reads the global option:
//
//	{
//	    better_auth {
//	        grpc <address>
//	        http <address>
//	        tls  <cert.pem> <key.pem>   # gRPC over TLS
//	        # and every subdirective of the better_auth handler
//	    }
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	a := new(App)
	d.Next()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	err := a.unmarshalBlock(d, func(name string) (bool, error) {
		switch name {
		case "grpc":
			return true, oneArg(d, &a.GRPC)
		case "http":
			return true, oneArg(d, &a.HTTP)
		case "tls":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return true, d.ArgErr()
			}
			a.TLSCert, a.TLSKey = args[0], args[1]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "better_auth", Value: caddyconfig.JSON(a, nil)}, nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
