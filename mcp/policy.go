package mcp

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	whatwg "github.com/nlnwa/whatwg-url/url"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Requirement is what a rule asks of each kind of credential: each is
// judged by what it can hold. An OAuth access token by Scopes, an API key
// by Permissions, a session by Roles; a kind whose requirement is empty
// while another's is set may not pass at all (a rule written for admins'
// sessions does not open the tool to every API key). A requirement with
// nothing set lets every verified credential through; Deny, none.
type Requirement struct {
	// Scopes an OAuth access token must have been granted, all of them.
	// One short of them gets 403 with an insufficient_scope challenge
	// naming them (and the route's require_scope), to step up.
	Scopes []string
	// Permissions an API key must hold, every action on every resource,
	// as Better-Auth's verifyApiKey({permissions}) decides.
	Permissions betterauth.Permissions
	// Roles of which a session's user must hold one (the admin plugin's
	// user.role, several comma-separated).
	Roles []string
	// Deny refuses every credential: the tool is hidden and refused.
	Deny bool
}

// open reports whether r lets every verified credential through.
func (r *Requirement) open() bool {
	return !r.Deny && len(r.Scopes)+len(r.Permissions)+len(r.Roles) == 0
}

// validate reports what can never be met.
func (r *Requirement) validate() error {
	for _, s := range r.Scopes {
		if !betterauth.IsScopeToken(s) {
			return fmt.Errorf("scope %q is not a scope (RFC 6749 scope tokens are printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	for resource, actions := range r.Permissions {
		if resource == "" || len(actions) == 0 {
			return fmt.Errorf("permission %q needs a resource and at least one action", resource)
		}
	}
	for _, role := range r.Roles {
		if strings.TrimSpace(role) == "" || strings.Contains(role, ",") {
			return fmt.Errorf("role %q is not a role name", role)
		}
	}
	if r.Deny && len(r.Scopes)+len(r.Permissions)+len(r.Roles) > 0 {
		return errors.New("deny refuses everyone: it takes no scope, permission or role")
	}
	return nil
}

// Rule says what the tools, resources or prompts whose names match
// Pattern need.
type Rule struct {
	Kind Kind
	// Pattern is matched against the whole name (a resource's URI, exactly
	// as the client sends it): '*' matches any run of characters, '/'
	// included, '?' one character, '\' makes the next character literal;
	// every other character matches itself, letter case included.
	Pattern string
	Requirement
}

// Policy judges what callers may use.
type Policy struct {
	rules []Rule
	def   *Rule // for names no rule matches; nil: they pass
	// judges says which kinds a rule (or the default) applies to.
	judges [Prompt + 1]bool
}

// NewPolicy checks rules (in the order they apply: the first that matches
// a name decides) and def (for names none matches; nil lets them pass).
func NewPolicy(rules []Rule, def *Requirement) (*Policy, error) {
	p := &Policy{}
	for _, r := range rules {
		if r.Kind < Tool || r.Kind > Prompt {
			return nil, fmt.Errorf("rule %q: unknown kind %d", r.Pattern, r.Kind)
		}
		if err := checkPattern(r.Pattern); err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.Kind, r.Pattern, err)
		}
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.Kind, r.Pattern, err)
		}
		p.rules = append(p.rules, r)
		p.judges[r.Kind] = true
	}
	if def != nil {
		if err := def.validate(); err != nil {
			return nil, fmt.Errorf("default: %w", err)
		}
		p.def = &Rule{Requirement: *def}
		p.judges = [Prompt + 1]bool{false, true, true, true}
	}
	return p, nil
}

// any reports whether the policy judges anything.
func (p *Policy) any() bool { return p.judges[Tool] || p.judges[Resource] || p.judges[Prompt] }

// Judges reports whether any rule (or the default) applies to kind k.
func (p *Policy) Judges(k Kind) bool { return p.judges[k] }

// find returns the rule for a name: the first that matches, or the
// default; nil when the name passes unjudged.
func (p *Policy) find(k Kind, name []byte) *Rule {
	for i := range p.rules {
		if r := &p.rules[i]; r.Kind == k && match(r.Pattern, name) {
			return r
		}
	}
	return p.def
}

// judge returns why c may not use the named target (Allowed when it may),
// and the rule that decided (nil when none did).
func (p *Policy) judge(c *caller, k Kind, name []byte) (betterauth.Reason, *Rule) {
	r := p.find(k, name)
	if r == nil {
		return betterauth.Allowed, nil
	}
	return r.check(c), r
}

// Allows reports whether the caller decision d describes may use the
// named target.
func (p *Policy) Allows(d *betterauth.Decision, k Kind, name string) bool {
	var c caller
	c.set(d)
	why, _ := p.judge(&c, k, []byte(name))
	return why == betterauth.Allowed
}

// check judges c by the requirement of its kind.
func (r *Rule) check(c *caller) betterauth.Reason {
	switch {
	case r.Deny:
		return betterauth.ToolNotAllowed
	case r.open():
		return betterauth.Allowed
	}
	switch c.method {
	case betterauth.MethodOAuth:
		if len(r.Scopes) == 0 {
			return betterauth.ToolNotAllowed
		}
		for _, s := range r.Scopes {
			if !slices.Contains(c.scopes, s) {
				return betterauth.InsufficientScope
			}
		}
	case betterauth.MethodAPIKey:
		if len(r.Permissions) == 0 {
			return betterauth.ToolNotAllowed
		}
		if !c.permissions.Grants(r.Permissions) {
			return betterauth.InsufficientPermissions
		}
	case betterauth.MethodSession:
		if len(r.Roles) == 0 {
			return betterauth.ToolNotAllowed
		}
		if !betterauth.HasRole(c.role, r.Roles) {
			return betterauth.InsufficientRole
		}
	default:
		return betterauth.ToolNotAllowed
	}
	return betterauth.Allowed
}

// caller is what the policy reads of a verified credential.
type caller struct {
	method      betterauth.Method
	scopes      []string
	permissions betterauth.Permissions
	role        string // the session's user's
	principal   principal
}

// principal is who a session is bound to: the user, or the organization
// owning an API key, or an OAuth client acting on its own; never the
// credential itself, which its owner may replace (a new token, a rotated
// key) within one session.
type principal struct {
	kind byte // 'u' user, 'o' organization, 'c' OAuth client, 'k' credential
	id   string
}

func (c *caller) set(d *betterauth.Decision) {
	*c = caller{method: d.Method, scopes: d.Scopes, permissions: d.Permissions}
	switch {
	case d.User != nil:
		c.role, c.principal = d.User.Role, principal{'u', d.User.ID}
	case d.Org != nil:
		c.principal = principal{'o', d.Org.ID}
	case d.Client != "":
		c.principal = principal{'c', d.Client}
	default:
		c.principal = principal{'k', d.CredentialID}
	}
}

// checkPattern reports a pattern that is empty or ends in a lone escape.
func checkPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' {
			if i++; i == len(p) {
				return errors.New(`the pattern ends with a lone \`)
			}
		}
	}
	return nil
}

// match reports whether name matches the whole of pattern: '*' matches
// any run of characters ('/' included), '?' one character, '\' quotes the
// next; names are compared byte for byte (UTF-8 compares rune for rune).
func match(pattern string, name []byte) bool {
	px, nx := 0, 0
	star, starN := -1, 0 // the last '*' seen, and where its run ends
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				star, starN = px, nx
				px++
				continue
			case '?':
				if nx < len(name) {
					_, size := utf8.DecodeRune(name[nx:])
					px, nx = px+1, nx+size
					continue
				}
			case '\\':
				if nx < len(name) && name[nx] == pattern[px+1] {
					px, nx = px+2, nx+1
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px, nx = px+1, nx+1
					continue
				}
			}
		}
		if star < 0 || starN == len(name) {
			return false
		}
		// The last '*' takes one more character, and matching goes on
		// from there.
		_, size := utf8.DecodeRune(name[starN:])
		starN += size
		px, nx = star+1, starN
	}
	return true
}

// plainURI reports whether a resource URI reads the same to every server:
// in the normal form of the WHATWG URL standard (the TypeScript SDK looks
// resources up by new URL(uri).toString(), which lower-cases a scheme and
// a special scheme's host, drops a default port, strips tabs, newlines
// and surrounding spaces, and adds missing slashes), and with no dot
// segment ("/../"), no backslash, and no percent-encoded '/', '\' or
// unreserved character (which a server may decode into another path).
// Rules match URIs as sent; such a URI could name, once normalized, a
// resource a rule guards under another spelling.
func plainURI(u []byte) bool {
	if !whatwgNormal(u) {
		return false
	}
	if i := slices.IndexFunc(u, func(c byte) bool { return c == '?' || c == '#' }); i >= 0 {
		u = u[:i]
	}
	seg := 0 // where the current path segment starts
	for i := 0; i <= len(u); i++ {
		if i == len(u) || u[i] == '/' {
			switch string(u[seg:i]) {
			case ".", "..":
				return false
			}
			seg = i + 1
			continue
		}
		switch u[i] {
		case '\\':
			return false
		case '%':
			if i+2 >= len(u) {
				return false
			}
			hi, ok1 := unhex(u[i+1])
			lo, ok2 := unhex(u[i+2])
			c := hi<<4 | lo
			if !ok1 || !ok2 || c == '/' || c == '\\' || unreserved(c) {
				return false
			}
		}
	}
	return true
}

// unreserved reports RFC 3986's unreserved characters, which are never
// percent-encoded in normal form.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// whatwgNormal reports whether u is unchanged by WHATWG URL parsing and
// serialization, but for what only spells the same URL differently: its
// non-ASCII bytes percent-encoded, and the "/" a special scheme's empty
// path becomes. A string that is no URL at all (new URL() throws on it) is
// left to the other checks.
func whatwgNormal(u []byte) bool {
	parsed, err := whatwg.Parse(string(u))
	if err != nil {
		return !slices.ContainsFunc(u, func(c byte) bool { return c <= ' ' || c == 0x7f })
	}
	href := parsed.Href(false)
	var want strings.Builder
	const hex = "0123456789ABCDEF"
	for _, c := range u {
		if c >= 0x80 {
			want.WriteByte('%')
			want.WriteByte(hex[c>>4])
			want.WriteByte(hex[c&15])
		} else {
			want.WriteByte(c)
		}
	}
	return href == want.String() || href == want.String()+"/" && parsed.Pathname() == "/" && !strings.HasSuffix(want.String(), "/")
}
