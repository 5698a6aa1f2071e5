package caddyauth

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddy-betterauth/caddy-betterauth/ratelimit"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("better_auth", parseCaddyfile)
	// Authenticate after basic_auth and before everything that serves or
	// proxies, so a Caddyfile needs no order line.
	httpcaddyfile.RegisterDirectiveOrder("better_auth", httpcaddyfile.After, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	better_auth [<matcher>] {
//	    database            <postgres-url>
//	    secret              <better-auth-secret>
//	    require_signature
//	    api_key_header      <name...>
//	    api_key_prefix      <prefix...>
//	    api_key_config_id   <id...>
//	    api_key_config <id> {
//	        references organization|user
//	        rate_limit off|on
//	    }
//	    oauth {
//	        resource <url>
//	        issuer   <url...>
//	        scopes   <scope...>
//	    }
//	    usage off|database|redis {
//	        better_auth_version <version>
//	        flush_interval      <duration>
//	    }
//	    mcp {                           # per-tool authorization (see unmarshalMCP)
//	        max_body      <size>
//	        bind_sessions strict|first_use|off
//	        session_ttl   <duration>
//	        tool|resource|prompt <pattern> [{
//	            scope      <scope...>
//	            permission <resource> <action...>
//	            role       <role...>
//	            deny
//	        }]
//	        default { ... }
//	    }
//	    allow               api_key|session...
//	    require_role        <role...>
//	    require_org_role    <role...>
//	    require_permission  <resource> <action...>
//	    allow_ip            <cidr...>
//	    deny_ip             <cidr...>
//	    api_key_allowed_ips_field <metadata-field>
//	    brute_force {
//	        failures    <n>
//	        window      <duration>
//	        max_clients <n>
//	    }
//	    rate_limit <name> {             # repeatable, checked in order
//	        key   api_key|user|organization|ip|global
//	        rate  <n>/<duration>        # e.g. 100/1m
//	        burst <n>                   # default: n
//	    }
//	    disable_key_hashing
//	    cookie_prefix       <prefix>
//	    cookie_name         <name>
//	    keep_credential
//	    disable_metrics
//	    realm               <realm>
//	    lookup_timeout      <duration>
//	    no_revocation_listener
//	    keep_revoked_streams
//	    schema {
//	        pg_schema     <name>
//	        naming        camel|snake
//	        table         user|session|api_key <name>
//	        use_plural
//	        api_key_owner reference_id|user_id
//	        column        <model>.<field> <name>
//	    }
//	    cache {
//	        ttl                    <duration>|off
//	        api_key_ttl            <duration>
//	        session_ttl            <duration>
//	        jitter                 <fraction>|off
//	        stale_while_revalidate <duration>
//	        stale_if_error         <duration>
//	        negative_ttl <duration>|off
//	        max_entries  <n>
//	        max_negative <n>
//	    }
//	    secondary_storage [<url>] {
//	        url      <url>
//	        prefix   <prefix>
//	        sessions storage|storage_then_database|database
//	        api_keys database|storage|storage_then_database
//	        timeout  <duration>
//	    }
//	    redis [<url>] {
//	        url             <url>
//	        sentinel_master <name>
//	        prefix          <prefix>
//	        timeout         <duration>
//	        key             <shared-key>
//	    }
//	}
//
// Placeholders such as {env.DATABASE_URL} are kept as written and replaced
// when the config loads. The parser only parses: values are checked by the
// packages that own them when the config is validated (Validate), for JSON
// configs too.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return unmarshalBlock(d, &h.Options, nil)
}

// unmarshalBlock parses the block's subdirectives; extra, when set, may
// claim more (the global option's listeners).
func unmarshalBlock(d *caddyfile.Dispenser, h *gateway.Options, extra func(name string) (bool, error)) error {
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] && name != "column" && name != "require_permission" && name != "api_key_config" && name != "rate_limit" {
			return d.Errf("%s already specified", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "database":
			err = oneArg(d, &h.Database)
		case "secret":
			err = oneArg(d, &h.Secret)
		case "cookie_prefix":
			err = oneArg(d, &h.CookiePrefix)
		case "cookie_name":
			err = oneArg(d, &h.CookieName)
		case "realm":
			err = oneArg(d, &h.Realm)
		case "require_signature":
			err = flag(d, &h.RequireSignature)
		case "disable_key_hashing":
			err = flag(d, &h.DisableKeyHashing)
		case "keep_credential":
			err = flag(d, &h.KeepCredential)
		case "disable_metrics":
			err = flag(d, &h.DisableMetrics)
		case "no_revocation_listener":
			err = flag(d, &h.NoRevocationListener)
		case "keep_revoked_streams":
			err = flag(d, &h.KeepRevokedStreams)
		case "api_key_header":
			err = args(d, &h.APIKeyHeaders)
		case "api_key_prefix":
			err = args(d, &h.APIKeyPrefixes)
		case "api_key_config_id":
			err = args(d, &h.APIKeyConfigIDs)
		case "allow":
			err = args(d, &h.Allow)
		case "require_role":
			err = args(d, &h.RequireRole)
		case "require_org_role":
			err = args(d, &h.RequireOrgRole)
		case "require_scope":
			err = args(d, &h.RequireScope)
		case "api_key_config":
			err = unmarshalAPIKeyConfig(d, h)
		case "oauth":
			h.OAuth = new(gateway.OAuth)
			err = unmarshalOAuth(d, h.OAuth)
		case "usage":
			h.Usage = new(gateway.Usage)
			err = unmarshalUsage(d, h.Usage)
		case "mcp":
			h.MCP = new(gateway.MCP)
			err = unmarshalMCP(d, h.MCP)
		case "rate_limit":
			err = unmarshalRateLimit(d, h)
		case "audit":
			h.Audit = new(gateway.Audit)
			err = unmarshalAudit(d, h.Audit)
		case "brute_force":
			h.BruteForce = new(gateway.BruteForce)
			err = unmarshalBruteForce(d, h.BruteForce)
		case "allow_ip":
			err = args(d, &h.AllowIP)
		case "deny_ip":
			err = args(d, &h.DenyIP)
		case "api_key_allowed_ips_field":
			err = oneArg(d, &h.APIKeyAllowedIPsField)
		case "require_permission":
			var words []string
			if err = args(d, &words); err != nil {
				return err
			}
			if len(words) < 2 {
				return d.Errf("require_permission takes <resource> <action...>")
			}
			if _, dup := h.RequirePermission[words[0]]; dup {
				return d.Errf("require_permission %s already specified", words[0])
			}
			if h.RequirePermission == nil {
				h.RequirePermission = map[string][]string{}
			}
			h.RequirePermission[words[0]] = words[1:]
		case "lookup_timeout":
			err = duration(d, &h.LookupTimeout, false)
		case "schema":
			h.Schema = new(gateway.Schema)
			err = unmarshalSchema(d, h.Schema)
		case "cache":
			h.Cache = new(gateway.Cache)
			err = unmarshalCache(d, h.Cache)
		case "redis":
			h.Redis = new(gateway.Redis)
			err = unmarshalRedis(d, h.Redis)
		case "secondary_storage":
			h.SecondaryStorage = new(gateway.SecondaryStorage)
			err = unmarshalSecondary(d, h.SecondaryStorage)
		default:
			handled := false
			if extra != nil {
				handled, err = extra(name)
			}
			if !handled && err == nil {
				return d.Errf("unrecognized subdirective '%s'", name)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unmarshalSchema(d *caddyfile.Dispenser, s *gateway.Schema) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		key := name
		if name == "table" || name == "column" {
			if !d.NextArg() {
				return d.ArgErr()
			}
			key = name + " " + d.Val()
			d.Prev()
		}
		if seen[key] {
			return d.Errf("%s already specified", key)
		}
		seen[key] = true
		var err error
		switch name {
		case "pg_schema":
			err = oneArg(d, &s.PGSchema)
		case "naming":
			err = oneArg(d, &s.Naming)
		case "use_plural":
			err = flag(d, &s.UsePlural)
		case "api_key_owner":
			err = oneArg(d, &s.APIKeyOwner)
		case "table":
			var pair []string
			if err = args(d, &pair); err != nil {
				return err
			}
			if len(pair) != 2 {
				return d.ArgErr()
			}
			switch pair[0] {
			case "user":
				s.UserTable = pair[1]
			case "session":
				s.SessionTable = pair[1]
			case "api_key":
				s.APIKeyTable = pair[1]
			default:
				return d.Errf("table must be user, session or api_key, not %q", pair[0])
			}
		case "column":
			var pair []string
			if err = args(d, &pair); err != nil {
				return err
			}
			if len(pair) != 2 || !strings.Contains(pair[0], ".") {
				return d.Errf("column takes <model>.<field> <name>")
			}
			if s.Columns == nil {
				s.Columns = map[string]string{}
			}
			s.Columns[pair[0]] = pair[1]
		default:
			return d.Errf("unrecognized schema subdirective '%s'", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unmarshalAPIKeyConfig(d *caddyfile.Dispenser, h *gateway.Options) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	id := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	if _, dup := h.APIKeyConfigs[id]; dup {
		return d.Errf("api_key_config %s already specified", id)
	}
	var c gateway.APIKeyConfig
	err := subBlock(d, nil, func(name string) error {
		switch name {
		case "references":
			return oneArg(d, &c.References)
		case "rate_limit":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			switch v {
			case "on", "off":
				on := v == "on"
				c.RateLimitEnabled = &on
				return nil
			}
			return d.Errf("rate_limit takes on or off, not %q", v)
		}
		return d.Errf("unrecognized api_key_config subdirective '%s'", name)
	})
	if err != nil {
		return err
	}
	if h.APIKeyConfigs == nil {
		h.APIKeyConfigs = map[string]gateway.APIKeyConfig{}
	}
	h.APIKeyConfigs[id] = c
	return nil
}

func unmarshalOAuth(d *caddyfile.Dispenser, a *gateway.OAuth) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return subBlock(d, nil, func(name string) error {
		switch name {
		case "resource":
			return oneArg(d, &a.Resource)
		case "issuer":
			return args(d, &a.Issuers)
		case "scopes":
			return args(d, &a.Scopes)
		case "allow_unbound_tokens":
			return flag(d, &a.AllowUnboundTokens)
		case "opaque_token_prefix":
			return oneArg(d, &a.OpaqueTokenPrefix)
		case "jwks_url":
			return oneArg(d, &a.JWKSURL)
		}
		return d.Errf("unrecognized oauth subdirective '%s'", name)
	})
}

func unmarshalUsage(d *caddyfile.Dispenser, u *gateway.Usage) error {
	if d.NextArg() {
		u.Mode = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return subBlock(d, nil, func(name string) error {
		switch name {
		case "better_auth_version":
			return oneArg(d, &u.BetterAuthVersion)
		case "flush_interval":
			return duration(d, &u.FlushInterval, false)
		}
		return d.Errf("unrecognized usage subdirective '%s'", name)
	})
}

func unmarshalRateLimit(d *caddyfile.Dispenser, h *gateway.Options) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	rl := gateway.RateLimit{Name: d.Val()}
	if d.NextArg() {
		return d.ArgErr()
	}
	for _, other := range h.RateLimits {
		if other.Name == rl.Name {
			return d.Errf("rate_limit %s already specified", rl.Name)
		}
	}
	err := subBlock(d, nil, func(name string) error {
		switch name {
		case "key":
			return oneArg(d, &rl.Key)
		case "rate":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			n, per, err := ratelimit.ParseRate(v, caddy.ParseDuration)
			if err != nil {
				return d.Errf("%v", err)
			}
			rl.Rate, rl.Window = n, gateway.Duration(per)
			return nil
		case "burst":
			return count(d, &rl.Burst)
		}
		return d.Errf("unrecognized rate_limit subdirective '%s'", name)
	})
	if err != nil {
		return err
	}
	if rl.Key == "" || rl.Rate == 0 {
		return d.Errf("rate_limit %s needs a key and a rate", rl.Name)
	}
	h.RateLimits = append(h.RateLimits, rl)
	return nil
}

// unmarshalAudit parses
//
//	audit [all|denials|off] {
//		database [table <name>]
//		queue <n>
//	}
func unmarshalAudit(d *caddyfile.Dispenser, a *gateway.Audit) error {
	if d.NextArg() {
		a.Events = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	queue := 0
	err := subBlock(d, nil, func(name string) error {
		switch name {
		case "database":
			a.Database = new(gateway.AuditDatabase)
			if !d.NextArg() {
				return nil
			}
			if d.Val() != "table" {
				return d.Errf("audit database takes table <name>, not %q", d.Val())
			}
			return oneArg(d, &a.Database.Table)
		case "queue":
			return count(d, &queue)
		}
		return d.Errf("unrecognized audit subdirective '%s'", name)
	})
	if err != nil || queue == 0 {
		return err
	}
	if a.Database == nil {
		return d.Err("audit queue is the database's: add database")
	}
	a.Database.Queue = queue
	return nil
}

func unmarshalBruteForce(d *caddyfile.Dispenser, b *gateway.BruteForce) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return subBlock(d, nil, func(name string) error {
		switch name {
		case "failures":
			return count(d, &b.Failures)
		case "window":
			return duration(d, &b.Window, false)
		case "max_clients":
			return count(d, &b.MaxClients)
		}
		return d.Errf("unrecognized brute_force subdirective '%s'", name)
	})
}

func unmarshalCache(d *caddyfile.Dispenser, c *gateway.Cache) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return subBlock(d, nil, func(name string) error {
		switch name {
		case "ttl":
			return duration(d, &c.TTL, true)
		case "api_key_ttl":
			return duration(d, &c.APIKeyTTL, false)
		case "session_ttl":
			return duration(d, &c.SessionTTL, false)
		case "stale_while_revalidate":
			return duration(d, &c.StaleWhileRevalidate, false)
		case "stale_if_error":
			return duration(d, &c.StaleIfError, false)
		case "jitter":
			var v string
			if err := oneArg(d, &v); err != nil {
				return err
			}
			if v == "off" {
				c.Jitter = -1
				return nil
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return d.Errf("jitter takes a fraction between 0 and 1, or off, not %q", v)
			}
			c.Jitter = f
			return nil
		case "negative_ttl":
			return duration(d, &c.NegativeTTL, true)
		case "max_entries":
			return count(d, &c.MaxEntries)
		case "max_negative":
			return count(d, &c.MaxNegative)
		}
		return d.Errf("unrecognized cache subdirective '%s'", name)
	})
}

// subBlock calls sub for each subdirective of the block at the cursor,
// rejecting repeats; seen may list names already given.
func subBlock(d *caddyfile.Dispenser, seen map[string]bool, sub func(name string) error) error {
	if seen == nil {
		seen = map[string]bool{}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("%s already specified", name)
		}
		seen[name] = true
		if err := sub(name); err != nil {
			return err
		}
	}
	return nil
}

func unmarshalSecondary(d *caddyfile.Dispenser, ss *gateway.SecondaryStorage) error {
	return urlBlock(d, "secondary_storage", &ss.URL, func(name string) error {
		switch name {
		case "prefix":
			var p string
			err := oneArg(d, &p)
			ss.Prefix = &p
			return err
		case "sessions", "api_keys":
			dst := &ss.Sessions
			if name == "api_keys" {
				dst = &ss.APIKeys
			}
			return oneArg(d, dst)
		case "timeout":
			return duration(d, &ss.Timeout, false)
		}
		return d.Errf("unrecognized secondary_storage subdirective '%s'", name)
	})
}

func unmarshalRedis(d *caddyfile.Dispenser, r *gateway.Redis) error {
	return urlBlock(d, "redis", &r.URL, func(name string) error {
		switch name {
		case "sentinel_master":
			return oneArg(d, &r.SentinelMaster)
		case "prefix":
			return oneArg(d, &r.Prefix)
		case "timeout":
			return duration(d, &r.Timeout, false)
		case "key":
			return oneArg(d, &r.Key)
		}
		return d.Errf("unrecognized redis subdirective '%s'", name)
	})
}

// urlBlock parses `<directive> [<url>] { url <url> ... }`: the URL on the
// line or in the block, once, and each other subdirective, once, by sub.
func urlBlock(d *caddyfile.Dispenser, directive string, url *string, sub func(name string) error) error {
	if d.NextArg() {
		*url = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	err := subBlock(d, map[string]bool{"url": *url != ""}, func(name string) error {
		if name == "url" {
			return oneArg(d, url)
		}
		return sub(name)
	})
	if err != nil {
		return err
	}
	if *url == "" {
		return d.Errf("%s needs a url", directive)
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func args(d *caddyfile.Dispenser, dst *[]string) error {
	*dst = d.RemainingArgs()
	if len(*dst) == 0 {
		return d.ArgErr()
	}
	return nil
}

func flag(d *caddyfile.Dispenser, dst *bool) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = true
	return nil
}

// duration parses a duration; with allowOff, "off" stores -1 (disabled).
func duration(d *caddyfile.Dispenser, dst *gateway.Duration, allowOff bool) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	if allowOff && s == "off" {
		*dst = -1
		return nil
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("bad duration %q: %v", s, err)
	}
	if v <= 0 {
		return d.Errf("duration must be positive: %q", s)
	}
	*dst = gateway.Duration(v)
	return nil
}

func count(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return d.Errf("want a positive whole number, not %q", s)
	}
	*dst = n
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
