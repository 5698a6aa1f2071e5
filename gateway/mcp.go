package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/mcp"
)

// MCP is per-tool authorization for an MCP endpoint: which credentials may
// call which tools, read which resources and get which prompts, judged
// after the route's own rules (allow, require_*) on every JSON-RPC request
// in the POST body (a batch passes whole or not at all). With it, the
// route is an MCP endpoint: every POST must be a JSON-RPC message the
// gateway can read (whatever its Content-Type, since servers differ in
// what they accept), at most max_body bytes, and refusals of POSTs are
// JSON-RPC errors. tools/list, resources/list, resources/templates/list
// and prompts/list answers are filtered to what the caller may use, and
// sessions of the 2025 revisions are bound to the principal that opened
// them. With ext_authz the rules apply as well (reading Envoy's MCP filter
// metadata, or the Mcp-Method and Mcp-Name headers of 2026-07-28, or the
// body Envoy sends); lists and sessions are the Caddy handler's alone,
// since ext_authz never sees the response.
type MCP struct {
	// The most bytes of a POST body the gateway reads to see what it asks
	// for. A longer body is refused with 413, never passed on unread.
	// Default: 1048576 (1 MiB).
	MaxBody int64 `json:"max_body,omitempty"`

	// The rules, in order: the first whose kind (tool, resource or
	// prompt) and pattern match the name decides. A pattern is matched
	// against the whole tool or prompt name, or the resource URI as the
	// client sends it: "*" matches any run of characters ("/" included),
	// "?" one character, "\" makes the next one literal; letter case
	// counts. They judge tools/call (params.name), resources/read and
	// resources/subscribe (params.uri), prompts/get (params.name),
	// completion/complete (its ref) and subscriptions/listen (its
	// resourceSubscriptions); other methods (initialize, ping,
	// notifications, the lists) pass.
	Rules []MCPRule `json:"rules,omitempty"`

	// What the tools, resources and prompts no rule matches need. Default:
	// nothing (they pass).
	Default *MCPRequirement `json:"default,omitempty"`

	// Sessions (Mcp-Session-Id, revisions 2025-03-26 to 2025-11-25): with
	// "strict", each session the upstream opens (its answer to initialize)
	// is bound to the principal that opened it (the user; an
	// organization's API key, the organization; a machine-to-machine
	// token, its OAuth client), and a request with a session id bound to
	// another principal, or one the gateway did not see opened, gets 404,
	// as for a session that ended, so that the client opens its own.
	// "first_use" binds an unknown session to the first principal that
	// uses it instead (replicas that do not see every initialize); "off"
	// leaves sessions alone. Bindings live in the gateway's memory.
	// Default: "strict".
	BindSessions string `json:"bind_sessions,omitempty"`

	// How long a session binding is kept unused. Default: 24h.
	SessionTTL Duration `json:"session_ttl,omitempty"`
}

// MCPRule says what the tools, resources or prompts whose names match a
// pattern need. Set exactly one of tool, resource and prompt.
type MCPRule struct {
	Tool     string `json:"tool,omitempty"`
	Resource string `json:"resource,omitempty"`
	Prompt   string `json:"prompt,omitempty"`
	MCPRequirement
}

// MCPRequirement is what each kind of credential needs: an OAuth access
// token, scopes; an API key, permissions; a session, a role. A kind whose
// requirement is left empty while another's is set is refused (403
// TOOL_NOT_ALLOWED); a requirement with nothing set admits every verified
// credential.
type MCPRequirement struct {
	// Scopes an OAuth access token must hold, all of them (with the oauth
	// block). A token short of one gets 403 with WWW-Authenticate: Bearer
	// error="insufficient_scope", scope="<the route's require_scope and
	// these>", so that its client can step up.
	Scopes []string `json:"scopes,omitempty"`
	// Permissions an API key must hold, resource → actions, all of them,
	// as Better-Auth's verifyApiKey({permissions}) decides. Others get
	// 403 INSUFFICIENT_PERMISSIONS.
	Permissions map[string][]string `json:"permissions,omitempty"`
	// Roles of which a session's user must hold one (the admin plugin's
	// user.role). Others get 403 INSUFFICIENT_ROLE.
	Roles []string `json:"roles,omitempty"`
	// Refuse every credential: the tool is hidden from lists and refused
	// (403 TOOL_NOT_ALLOWED).
	Deny bool `json:"deny,omitempty"`
}

func (r MCPRequirement) requirement() mcp.Requirement {
	return mcp.Requirement{Scopes: r.Scopes, Permissions: r.Permissions, Roles: r.Roles, Deny: r.Deny}
}

// config is the mcp package's view of the block.
func (m *MCP) config(gate *betterauth.Gate, sessions bool) (mcp.Config, error) {
	c := mcp.Config{MaxBody: m.MaxBody, SessionTTL: time.Duration(m.SessionTTL), Sessions: mcp.SessionsOff}
	if gate != nil {
		c.StepUp = gate.StepUp
	}
	if sessions {
		mode, err := mcp.ParseSessionMode(m.BindSessions)
		if err != nil {
			return c, err
		}
		c.Sessions = mode
	}
	for i, r := range m.Rules {
		kinds := 0
		rule := mcp.Rule{Requirement: r.requirement()}
		for _, k := range []struct {
			kind    mcp.Kind
			pattern string
		}{{mcp.Tool, r.Tool}, {mcp.Resource, r.Resource}, {mcp.Prompt, r.Prompt}} {
			if k.pattern != "" {
				kinds++
				rule.Kind, rule.Pattern = k.kind, k.pattern
			}
		}
		if kinds != 1 {
			return c, fmt.Errorf("rule %d: set exactly one of tool, resource and prompt", i+1)
		}
		c.Rules = append(c.Rules, rule)
	}
	if m.Default != nil {
		d := m.Default.requirement()
		c.Default = &d
	}
	return c, nil
}

// validate checks the block as written; oauth says whether the route
// accepts OAuth access tokens at all.
func (m *MCP) validate(oauth bool) error {
	if m.MaxBody < 0 || m.SessionTTL < 0 {
		return errors.New("max_body and session_ttl must not be negative")
	}
	c, err := m.config(nil, true)
	if err != nil {
		return err
	}
	if _, err := mcp.New(c); err != nil {
		return err
	}
	if !oauth {
		reqs := []*mcp.Requirement{c.Default}
		for i := range c.Rules {
			reqs = append(reqs, &c.Rules[i].Requirement)
		}
		for _, r := range reqs {
			if r != nil && len(r.Scopes) > 0 {
				return errors.New("scopes are about OAuth access tokens, which are accepted only with an oauth block")
			}
		}
	}
	return nil
}

// Guard returns the mcp block's per-tool authorization over gate, or nil
// without an mcp block. sessions says whether the front end sees the
// responses that open sessions (the Caddy handler does, ext_authz not).
func (o *Options) Guard(gate *betterauth.Gate, sessions bool) (*mcp.Guard, error) {
	if o.MCP == nil {
		return nil, nil
	}
	c, err := o.MCP.config(gate, sessions)
	if err != nil {
		return nil, fmt.Errorf("mcp: %w", err)
	}
	g, err := mcp.New(c)
	if err != nil {
		return nil, fmt.Errorf("mcp: %w", err)
	}
	return g, nil
}
