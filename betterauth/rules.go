package betterauth

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Rules are what a route asks of a verified credential beyond its being
// valid. They are checked after the Verifier allows, so a refused request
// has shown a genuine credential: the answer says what it lacks.
type Rules struct {
	// Methods are the credential kinds accepted; empty accepts any. A
	// credential of another kind gets 401 CREDENTIAL_NOT_ACCEPTED, with a
	// challenge, since another credential may pass.
	Methods []Method
	// Roles, when set, admit only users holding one of them in user.role
	// (the admin plugin stores several as "admin,user"; each is compared
	// exactly, letter case included). Others get 403 INSUFFICIENT_ROLE; a
	// user without a role, or a database without the admin plugin, never
	// passes.
	Roles []string
	// OrgRoles, when set, admit only sessions whose user holds one of them
	// in the session's active organization (the organization plugin's
	// member.role, a comma-separated list compared as Roles). Others get
	// 403 INSUFFICIENT_ORG_ROLE: sessions without an active organization,
	// or whose user is no longer a member of it, and API keys (which have
	// no active organization).
	OrgRoles []string
	// Permissions, when set, admit only API keys whose permissions grant
	// every listed action on every listed resource, as Better-Auth's
	// verifyApiKey({permissions}) decides. Others, sessions included, get
	// 403 INSUFFICIENT_PERMISSIONS (Better-Auth itself answers 401
	// KEY_NOT_FOUND).
	Permissions Permissions
	// Scopes, when set, admit only OAuth access tokens granted every one of
	// them. Others get 403 INSUFFICIENT_SCOPE: an OAuth token with a
	// challenge naming the scopes (RFC 6750 insufficient_scope), so that
	// its client can ask for more; API keys and sessions, which hold no
	// scopes and cannot ask, without one.
	Scopes []string
	// AllowIPs, when set, admit only clients within one of the prefixes;
	// DenyIPs refuse clients within any. Both are checked before the
	// credential is even read, and a client whose address the front end
	// cannot tell is refused by either: 403 IP_NOT_ALLOWED.
	AllowIPs, DenyIPs []netip.Prefix
}

// admits reports whether the route's address rules let client in.
func (r *Rules) admits(client netip.Addr) bool {
	if len(r.AllowIPs) == 0 && len(r.DenyIPs) == 0 {
		return true
	}
	if !client.IsValid() {
		return false
	}
	// ::ffff:10.0.0.1 is 10.0.0.1, and a zone (fe80::1%eth0) names the
	// interface, not the client: Prefix.Contains never matches one.
	client = client.Unmap().WithZone("")
	for _, p := range r.DenyIPs {
		if p.Contains(client) {
			return false
		}
	}
	if len(r.AllowIPs) == 0 {
		return true
	}
	for _, p := range r.AllowIPs {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// ParsePrefix reads an address rule: a CIDR prefix (10.0.0.0/8,
// 2001:db8::/32) or one address (a /32 or /128). An IPv4-mapped IPv6 rule
// is its IPv4 prefix, since clients are compared unmapped; one that reaches
// beyond the mapped range, or an address with a zone, is refused.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, fmt.Errorf("%q is neither an address nor a CIDR prefix", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has a zone; a rule names addresses, not interfaces", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p != p.Masked() {
		return p, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return p, fmt.Errorf("%q reaches beyond IPv4-mapped addresses", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}

// Permissions map a resource to its actions, as the api-key plugin stores
// them and as verifyApiKey's permissions argument asks for them.
type Permissions map[string][]string

// ParsePermissions reads the api-key plugin's permissions column: JSON text
// of an object of arrays. Text that does not parse grants nothing, as in
// Better-Auth (safeJSONParse gives null); a resource whose value is not an
// array grants nothing on that resource (Better-Auth would match a string
// value by substring: refused here), and an array's elements that are not
// strings grant nothing.
func ParsePermissions(text string) Permissions {
	var raw map[string]json.RawMessage
	if text == "" || json.Unmarshal([]byte(text), &raw) != nil || raw == nil {
		return nil
	}
	p := make(Permissions, len(raw))
	for resource, v := range raw {
		// Element by element: includes() finds a string among other
		// values, and null is no action (not "", as []string would read it).
		var elems []json.RawMessage
		if json.Unmarshal(v, &elems) != nil || elems == nil {
			continue
		}
		actions := make([]string, 0, len(elems))
		for _, e := range elems {
			var a string
			if len(e) > 0 && e[0] == '"' && json.Unmarshal(e, &a) == nil {
				actions = append(actions, a)
			}
		}
		p[resource] = actions
	}
	return p
}

// Grants reports whether p grants want: Better-Auth's role(p).authorize
// with its default AND connector. Every resource asked for must be present
// with every action asked for (exact strings; "*" is no wildcard), and an
// empty request, or a resource with no actions, is refused.
func (p Permissions) Grants(want Permissions) bool {
	if len(want) == 0 {
		return false
	}
	for resource, actions := range want {
		allowed, ok := p[resource]
		if !ok || len(actions) == 0 {
			return false
		}
		for _, a := range actions {
			if !slices.Contains(allowed, a) {
				return false
			}
		}
	}
	return true
}

// ParseMethod returns the Method named as in X-Auth-Method: "api_key",
// "session" or "oauth".
func ParseMethod(s string) (Method, error) {
	switch s {
	case "api_key":
		return MethodAPIKey, nil
	case "session":
		return MethodSession, nil
	case "oauth":
		return MethodOAuth, nil
	}
	return MethodNone, fmt.Errorf("a credential kind is api_key, session or oauth, not %q", s)
}

// Validate reports rules that can never pass.
func (r Rules) Validate() error {
	for _, m := range r.Methods {
		if m != MethodAPIKey && m != MethodSession && m != MethodOAuth {
			return fmt.Errorf("unknown credential kind %d", m)
		}
	}
	for resource, actions := range r.Permissions {
		if resource == "" || len(actions) == 0 {
			return fmt.Errorf("require_permission: %q needs a resource and at least one action", resource)
		}
	}
	for _, role := range r.Roles {
		if strings.TrimSpace(role) == "" || strings.Contains(role, ",") {
			return fmt.Errorf("require_role: %q is not a role name", role)
		}
	}
	for _, sc := range r.Scopes {
		if !IsScopeToken(sc) {
			return fmt.Errorf("require_scope: %q is not a scope (RFC 6749 scope tokens are printable ASCII without spaces, quotes or backslashes)", sc)
		}
	}
	for _, role := range r.OrgRoles {
		if strings.TrimSpace(role) == "" || strings.Contains(role, ",") {
			return fmt.Errorf("require_org_role: %q is not a role name", role)
		}
	}
	return nil
}

// asks reports whether the rules ask anything at all.
func (r *Rules) asks() bool {
	return len(r.Methods)+len(r.Roles)+len(r.OrgRoles)+len(r.Permissions)+len(r.Scopes)+len(r.AllowIPs)+len(r.DenyIPs) > 0
}

// check returns why an allowed decision breaks the rules, or Allowed.
func (r *Rules) check(d *Decision) Reason {
	if len(r.Methods) > 0 && !slices.Contains(r.Methods, d.Method) {
		return CredentialNotAccepted
	}
	// An organization-owned key has no user, and so no role.
	if len(r.Roles) > 0 && (d.User == nil || !HasRole(d.User.Role, r.Roles)) {
		return InsufficientRole
	}
	if len(r.OrgRoles) > 0 && (d.Member == nil || !HasRole(d.Member.Role, r.OrgRoles)) {
		return InsufficientOrgRole
	}
	if len(r.Permissions) > 0 && !d.Permissions.Grants(r.Permissions) {
		return InsufficientPermissions
	}
	if len(r.Scopes) > 0 && (d.Method != MethodOAuth || !holds(d.Scopes, r.Scopes)) {
		return InsufficientScope
	}
	return Allowed
}

// hasRole reports whether a stored role list holds any of the wanted roles.
func HasRole(stored string, want []string) bool {
	for held := range strings.SplitSeq(stored, ",") {
		held = strings.TrimSpace(held)
		for _, w := range want {
			if held != "" && held == w {
				return true
			}
		}
	}
	return false
}

// holds reports whether granted holds every scope of want.
func holds(granted, want []string) bool {
	for _, s := range want {
		if !slices.Contains(granted, s) {
			return false
		}
	}
	return true
}

// IsScopeToken reports whether s is an RFC 6749 §3.3 scope token:
// 1*( %x21 / %x23-5B / %x5D-7E ), which a challenge can quote as it is.
func IsScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
