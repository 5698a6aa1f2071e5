package caddyauth

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
	"github.com/caddy-betterauth/caddy-betterauth/mcp"
)

// unmarshalMCP parses the mcp block:
//
//	mcp {
//	    max_body      <size>                  # e.g. 1MiB; default 1MiB
//	    bind_sessions strict|first_use|off    # default strict
//	    session_ttl   <duration>              # default 24h
//	    tool     <pattern> [{ <requirement> }]
//	    resource <pattern> [{ <requirement> }]
//	    prompt   <pattern> [{ <requirement> }]
//	    default  { <requirement> }
//	}
//
// where a requirement is any of
//
//	scope      <scope...>               # OAuth access tokens
//	permission <resource> <action...>   # API keys; repeat per resource
//	role       <role...>                # sessions' users
//	deny                                # nobody
//
// A rule without a block admits every verified credential.
func unmarshalMCP(d *caddyfile.Dispenser, m *gateway.MCP) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] && name != "tool" && name != "resource" && name != "prompt" {
			return d.Errf("%s already specified", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "max_body":
			var v string
			if err = oneArg(d, &v); err == nil {
				m.MaxBody, err = parseSize(v)
				if err != nil {
					err = d.Errf("max_body: %v", err)
				}
			}
		case "bind_sessions":
			err = oneArg(d, &m.BindSessions)
		case "session_ttl":
			err = duration(d, &m.SessionTTL, false)
		case "tool", "resource", "prompt":
			var r gateway.MCPRule
			var pattern string
			if err = oneArg(d, &pattern); err != nil {
				return err
			}
			switch name {
			case "tool":
				r.Tool = pattern
			case "resource":
				r.Resource = pattern
			default:
				r.Prompt = pattern
			}
			err = unmarshalRequirement(d, &r.MCPRequirement)
			m.Rules = append(m.Rules, r)
		case "default":
			if d.NextArg() {
				return d.ArgErr()
			}
			m.Default = new(gateway.MCPRequirement)
			err = unmarshalRequirement(d, m.Default)
		default:
			return d.Errf("unrecognized mcp subdirective '%s'", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalRequirement parses a rule's block, if any.
func unmarshalRequirement(d *caddyfile.Dispenser, r *gateway.MCPRequirement) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] && name != "permission" {
			return d.Errf("%s already specified", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "scope":
			err = args(d, &r.Scopes)
		case "role":
			err = args(d, &r.Roles)
		case "deny":
			err = flag(d, &r.Deny)
		case "permission":
			var words []string
			if err := args(d, &words); err != nil {
				return err
			}
			if len(words) < 2 {
				return d.Errf("permission takes <resource> <action...>")
			}
			if _, dup := r.Permissions[words[0]]; dup {
				return d.Errf("permission %s already specified", words[0])
			}
			if r.Permissions == nil {
				r.Permissions = map[string][]string{}
			}
			r.Permissions[words[0]] = words[1:]
		default:
			return d.Errf("unrecognized rule subdirective '%s'", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseSize reads a byte count: a whole number, optionally with a unit
// (B, KB, MB, GB in powers of 1000; KiB, MiB, GiB in powers of 1024; any
// letter case).
func parseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	units := map[string]int64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}
	unit, ok := units[strings.ToLower(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit (B, KB, KiB, MB, MiB, GB, GiB)", s)
	}
	if n > (1<<62)/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * unit, nil
}

// beginMCP starts judging r on an MCP endpoint: nil without an mcp block.
func (h *Handler) beginMCP(r *http.Request) *mcp.Call {
	if h.guard == nil {
		return nil
	}
	return h.guard.Begin(mcp.Request{Method: r.Method, Header: r.Header, Body: r.Body, ContentLength: r.ContentLength})
}

// authorizer is call as the gate takes it: nil for none.
func authorizer(call *mcp.Call) betterauth.Authorizer {
	if call == nil {
		return nil
	}
	return call
}
