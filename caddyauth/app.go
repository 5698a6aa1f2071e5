package caddyauth

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/caddy-betterauth/caddy-betterauth/extauthz"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
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
	gateway.Options
	// Where ext_authz is served.
	extauthz.Listeners

	front
	ctx     caddy.Context
	serving *extauthz.Serving
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "better_auth", New: func() caddy.Module { return new(App) }}
}

// Provision sets the app up, sharing the gateway with handlers configured
// alike. It does no network I/O.
func (a *App) Provision(ctx caddy.Context) error {
	if err := a.Listeners.Validate(); err != nil {
		return fmt.Errorf("better_auth app: %w", err)
	}
	a.ctx = ctx
	return a.provision(ctx, a.Options, metrics.FrontExtAuthz)
}

// Validate checks the configuration; it changes nothing.
func (a *App) Validate() error { return a.Options.Validate() }

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
	return l, nil
}

// Start serves.
func (a *App) Start() error {
	guard, err := a.Options.Guard(a.gate, false) // ext_authz sees no response: no sessions
	if err != nil {
		return fmt.Errorf("better_auth app: %w", err)
	}
	sv, err := a.Listeners.Serve(extauthz.New(a.gate, extauthz.WithMCP(guard), extauthz.WithAudit(a.audit)), a.listen, a.logger)
	if err != nil {
		return fmt.Errorf("better_auth app: %w", err)
	}
	a.serving = sv
	return nil
}

// Stop stops serving, letting calls in flight finish for a few seconds.
func (a *App) Stop() error {
	if a.serving == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.serving.Stop(ctx)
}

// Cleanup releases the shared gateway.
func (a *App) Cleanup() error { return a.release() }

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
	err := unmarshalBlock(d, &a.Options, func(name string) (bool, error) {
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
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
