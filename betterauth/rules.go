package betterauth

import (
	"fmt"
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
}

// ParseMethod returns the Method named as in X-Auth-Method: "api_key" or
// "session".
func ParseMethod(s string) (Method, error) {
	switch s {
	case "api_key":
		return MethodAPIKey, nil
	case "session":
		return MethodSession, nil
	}
	return MethodNone, fmt.Errorf("a credential kind is api_key or session, not %q", s)
}

// Validate reports rules that can never pass.
func (r Rules) Validate() error {
	for _, m := range r.Methods {
		if m != MethodAPIKey && m != MethodSession {
			return fmt.Errorf("unknown credential kind %d", m)
		}
	}
	for _, role := range r.Roles {
		if strings.TrimSpace(role) == "" || strings.Contains(role, ",") {
			return fmt.Errorf("require_role: %q is not a role name", role)
		}
	}
	return nil
}

// check returns why an allowed decision breaks the rules, or Allowed.
func (r *Rules) check(d *Decision) Reason {
	if len(r.Methods) > 0 && !containsMethod(r.Methods, d.Method) {
		return CredentialNotAccepted
	}
	if len(r.Roles) > 0 && !hasRole(d.User.Role, r.Roles) {
		return InsufficientRole
	}
	return Allowed
}

func containsMethod(ms []Method, m Method) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// hasRole reports whether a stored role list holds any of the wanted roles.
func hasRole(stored string, want []string) bool {
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
