package caddyauth

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-betterauth/caddy-betterauth/audit"
	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddy-betterauth/caddy-betterauth/metrics"
	"github.com/caddy-betterauth/caddy-betterauth/oauth"
)

// caddyMetrics are the families every handler and app counts in, one set
// for the process, as Caddy's own: each config load registers them on its
// fresh registry, and counters do not restart with a reload.
var caddyMetrics = metrics.New(metrics.CaddyNamespace)

// gateways shares one gateway (database pool, caches, watchers) between
// every handler and app configured alike, and keeps it warm across config
// reloads, which provision the new modules before cleaning up the old ones.
var gateways = caddy.NewUsagePool()

// front is what the handler and the app hold: a gate over a shared
// gateway. Both provision it the same way.
type front struct {
	gw      *gateway.Gateway
	gate    *betterauth.Gate
	streams *gateway.Streams // nil: requests are not tied to their credential
	// resource is the MCP server as an OAuth protected resource, whose
	// metadata the handler serves; nil without an oauth block.
	resource *oauth.Resource
	key      string // the gateway's key in the pool; "" once released
	logger   *zap.Logger
	audit    *audit.Log // nil: no audit trail
	unaudit  func()     // lets go of the audit trail's sink
	frontEnd string
}

// provision replaces the placeholders of o, loads (or shares) its gateway
// and builds its gate, whose decisions count as frontEnd's. It registers
// the metrics on the config's registry unless o disables them. It does no
// network I/O.
func (f *front) provision(ctx caddy.Context, o gateway.Options, frontEnd string) error {
	f.logger = ctx.Logger()
	o.Metrics, o.FrontEnd = caddyMetrics, frontEnd
	if !o.DisableMetrics {
		if reg := ctx.GetMetricsRegistry(); reg != nil {
			if err := caddyMetrics.Register(reg); err != nil {
				return fmt.Errorf("registering metrics: %w", err)
			}
		}
	}
	repl := caddy.NewReplacer()
	o = o.Resolve(func(s string) string { return repl.ReplaceAll(s, "") })
	key, err := gateway.SharingKey(o)
	if err != nil {
		return err
	}
	v, _, err := gateways.LoadOrNew(key, func() (caddy.Destructor, error) { return gateway.Open(o, f.logger) })
	if err != nil {
		return err
	}
	f.gw, f.key = v.(*gateway.Gateway), key
	if f.gate, err = f.gw.Gate(o, f.logger); err != nil {
		f.release()
		return err
	}
	if o.OAuth != nil {
		f.resource, _ = o.OAuth.Protected() // checked by Gate
	}
	if f.audit, f.unaudit, err = f.gw.Auditor(o, f.logger); err != nil {
		f.release()
		return err
	}
	f.frontEnd = frontEnd
	return nil
}

// release lets go of the shared gateway; the last user closes it.
func (f *front) release() error {
	if f.key == "" {
		return nil
	}
	if f.unaudit != nil {
		f.unaudit()
	}
	_, err := gateways.Delete(f.key)
	f.key = ""
	return err
}
