package mcp

import (
	"strings"
	"testing"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"whoami", "whoami", true},
		{"whoami", "whoam", false},
		{"whoami", "whoami2", false},
		{"whoami", "WhoAmI", false}, // letter case counts
		{"delete_*", "delete_item", true},
		{"delete_*", "delete_", true},
		{"delete_*", "undelete_item", false},
		{"*_admin", "db_admin", true},
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"a*b", "abab", true},
		{"a*b", "abac", false},
		{"?", "é", true}, // one character, not one byte
		{"??", "é", false},
		{"caf?", "café", true},
		{"file:///secret/*", "file:///secret/a/b/c", true}, // '/' too
		{"file:///secret/*", "file:///secrets", false},
		{`literal\*`, "literal*", true},
		{`literal\*`, "literalx", false},
		{`a\?`, "a?", true},
		{`a\\b`, `a\b`, true},
		{"***", "x", true},
		{"*a", strings.Repeat("b", 1000), false},
	} {
		if got := match(tc.pattern, []byte(tc.name)); got != tc.want {
			t.Errorf("match(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
	if checkPattern("") == nil || checkPattern(`a\`) == nil || checkPattern(`a\\`) != nil {
		t.Fatal("checkPattern")
	}
}

func TestPlainURI(t *testing.T) {
	t.Parallel()
	for uri, want := range map[string]bool{
		"file:///secret/key":            true,
		"https://x.example/a%20b":       true,
		"file:///a?q=../..%2F":          true, // the query is not the path
		"file:///public/../secret/key":  false,
		"file:///public/./x":            false,
		"file:///secret/..":             false,
		"file:///secret%2Fkey":          false,
		"file:///secret%2fkey":          false,
		"file:///secret%5Ckey":          false,
		"file:///%73ecret/key":          false, // %73 is "s"
		"file:///secret\\key":           false,
		"file:///bad%zz":                false,
		"file:///bad%4":                 false,
		"db://host/table..backup/x.y.z": true,
	} {
		if got := plainURI([]byte(uri)); got != want {
			t.Errorf("plainURI(%q) = %v", uri, got)
		}
	}
}

func oauthCaller(scopes ...string) *betterauth.Decision {
	return &betterauth.Decision{Method: betterauth.MethodOAuth, Scopes: scopes, Client: "c1",
		User: &betterauth.User{ID: "u1", Role: "admin"}}
}

func keyCaller(p betterauth.Permissions) *betterauth.Decision {
	return &betterauth.Decision{Method: betterauth.MethodAPIKey, Permissions: p, User: &betterauth.User{ID: "u1", Role: "admin"}}
}

func sessionCaller(role string) *betterauth.Decision {
	return &betterauth.Decision{Method: betterauth.MethodSession, User: &betterauth.User{ID: "u2", Role: role}}
}

// Each credential is judged by what it can hold; a rule that names nothing
// for its kind refuses it; the first matching rule decides; the default
// takes the rest.
func TestPolicyJudgesEachKindByItsOwnRequirement(t *testing.T) {
	t.Parallel()
	p, err := NewPolicy([]Rule{
		{Kind: Tool, Pattern: "whoami"},
		{Kind: Tool, Pattern: "delete_*", Requirement: Requirement{Scopes: []string{"mcp:admin"},
			Permissions: betterauth.Permissions{"tools": {"delete"}}, Roles: []string{"admin"}}},
		{Kind: Tool, Pattern: "delete_*", Requirement: Requirement{Deny: true}}, // never reached
		{Kind: Tool, Pattern: "sessions_only", Requirement: Requirement{Roles: []string{"user", "admin"}}},
		{Kind: Tool, Pattern: "hidden", Requirement: Requirement{Deny: true}},
		{Kind: Resource, Pattern: "file:///secret/*", Requirement: Requirement{Roles: []string{"admin"}}},
		{Kind: Prompt, Pattern: "review", Requirement: Requirement{Scopes: []string{"mcp:read"}}},
	}, &Requirement{Scopes: []string{"mcp:read"}, Permissions: betterauth.Permissions{"tools": {"call"}}, Roles: []string{"user", "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	admin := keyCaller(betterauth.Permissions{"tools": {"call", "delete"}})
	user := keyCaller(betterauth.Permissions{"tools": {"call"}})
	for _, tc := range []struct {
		who  *betterauth.Decision
		kind Kind
		name string
		want betterauth.Reason
	}{
		{oauthCaller(), Tool, "whoami", betterauth.Allowed},
		{keyCaller(nil), Tool, "whoami", betterauth.Allowed},
		{sessionCaller(""), Tool, "whoami", betterauth.Allowed},
		{oauthCaller("mcp:admin"), Tool, "delete_item", betterauth.Allowed},
		{oauthCaller("mcp:read"), Tool, "delete_item", betterauth.InsufficientScope},
		{admin, Tool, "delete_item", betterauth.Allowed},
		{user, Tool, "delete_item", betterauth.InsufficientPermissions},
		{sessionCaller("admin"), Tool, "delete_item", betterauth.Allowed},
		{sessionCaller("user,admin"), Tool, "delete_item", betterauth.Allowed},
		{sessionCaller("user"), Tool, "delete_item", betterauth.InsufficientRole},
		// A rule for sessions only: keys and tokens, whatever they hold.
		{sessionCaller("user"), Tool, "sessions_only", betterauth.Allowed},
		{admin, Tool, "sessions_only", betterauth.ToolNotAllowed},
		{oauthCaller("mcp:admin", "mcp:read"), Tool, "sessions_only", betterauth.ToolNotAllowed},
		{sessionCaller("admin"), Tool, "hidden", betterauth.ToolNotAllowed},
		// Kinds are apart: a resource rule is no tool rule.
		{sessionCaller("user"), Resource, "file:///secret/a", betterauth.InsufficientRole},
		{sessionCaller("admin"), Resource, "file:///secret/a", betterauth.Allowed},
		{oauthCaller("mcp:admin"), Resource, "file:///secret/a", betterauth.ToolNotAllowed},
		{oauthCaller("mcp:read"), Prompt, "review", betterauth.Allowed},
		{sessionCaller("admin"), Prompt, "review", betterauth.ToolNotAllowed},
		// The default.
		{oauthCaller("mcp:read"), Tool, "search", betterauth.Allowed},
		{oauthCaller(), Tool, "search", betterauth.InsufficientScope},
		{user, Tool, "search", betterauth.Allowed},
		{keyCaller(nil), Tool, "search", betterauth.InsufficientPermissions},
		{sessionCaller(""), Tool, "search", betterauth.InsufficientRole},
		{sessionCaller("user"), Resource, "file:///public/a", betterauth.Allowed},
	} {
		var c caller
		c.set(tc.who)
		if got, _ := p.judge(&c, tc.kind, []byte(tc.name)); got != tc.want {
			t.Errorf("%v %s %s: %v, want %v", tc.who.Method, tc.kind, tc.name, got, tc.want)
		}
		if p.Allows(tc.who, tc.kind, tc.name) != (tc.want == betterauth.Allowed) {
			t.Errorf("Allows disagrees for %s %s", tc.kind, tc.name)
		}
	}
	// An organization's key has no user: judged by its permissions.
	org := &betterauth.Decision{Method: betterauth.MethodAPIKey, Org: &betterauth.Organization{ID: "o1"},
		Permissions: betterauth.Permissions{"tools": {"call", "delete"}}}
	if !p.Allows(org, Tool, "delete_x") {
		t.Fatal("an organization's key with the permission")
	}
}

func TestPolicyWithoutDefaultLetsUnlistedNamesPass(t *testing.T) {
	t.Parallel()
	p, err := NewPolicy([]Rule{{Kind: Tool, Pattern: "admin_*", Requirement: Requirement{Roles: []string{"admin"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Allows(keyCaller(nil), Tool, "search") || !p.Allows(keyCaller(nil), Prompt, "admin_x") || p.Allows(keyCaller(nil), Tool, "admin_x") {
		t.Fatal("unlisted names")
	}
	if !p.Judges(Tool) || p.Judges(Resource) || p.Judges(Prompt) {
		t.Fatal("Judges")
	}
}

func TestPolicyRefusesRulesThatCannotWork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rules []Rule
		def   *Requirement
	}{
		{rules: []Rule{{Kind: Tool, Pattern: ""}}},
		{rules: []Rule{{Kind: Tool, Pattern: `x\`}}},
		{rules: []Rule{{Kind: 9, Pattern: "x"}}},
		{rules: []Rule{{Kind: Tool, Pattern: "x", Requirement: Requirement{Scopes: []string{"a b"}}}}},
		{rules: []Rule{{Kind: Tool, Pattern: "x", Requirement: Requirement{Scopes: []string{`a"`}}}}},
		{rules: []Rule{{Kind: Tool, Pattern: "x", Requirement: Requirement{Roles: []string{"a,b"}}}}},
		{rules: []Rule{{Kind: Tool, Pattern: "x", Requirement: Requirement{Roles: []string{" "}}}}},
		{rules: []Rule{{Kind: Tool, Pattern: "x", Requirement: Requirement{Permissions: betterauth.Permissions{"tools": nil}}}}},
		{rules: []Rule{{Kind: Tool, Pattern: "x", Requirement: Requirement{Deny: true, Roles: []string{"admin"}}}}},
		{def: &Requirement{Scopes: []string{""}}},
	} {
		if _, err := NewPolicy(tc.rules, tc.def); err == nil {
			t.Errorf("accepted %+v %+v", tc.rules, tc.def)
		}
	}
}

// The spellings the TypeScript SDK's new URL() folds into a guarded URI are
// refused; URIs already in normal form pass, non-ASCII ones included.
func TestPlainURIWHATWG(t *testing.T) {
	for uri, want := range map[string]bool{
		"demo://secret/plans":                 true,
		"https://docs.example.com/secret/a":   true,
		"https://docs.example.com":            true,
		"file:///Zoë/notes.txt":               true,
		"DEMO://secret/plans":                 false,
		"Demo://secret/plans":                 false,
		"demo://se\tcret/plans":               false,
		" demo://secret/plans":                false,
		"demo://secret/plans ":                false,
		"HTTPS://docs.example.com/secret/a":   false,
		"https://DOCS.example.com/secret/a":   false,
		"https://docs.example.com:443/secret": false,
		"https:docs.example.com/secret/a":     false,
		"https:/docs.example.com/secret/a":    false,
		"demo://secret/.\t./x":                false,
	} {
		if got := plainURI([]byte(uri)); got != want {
			t.Errorf("plainURI(%q) = %v, want %v", uri, got, want)
		}
	}
}
