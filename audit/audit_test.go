package audit

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

const secret = "ba_0123456789abcdefghijklmnopqrstuv"

func allowedKey() *betterauth.Result {
	return &betterauth.Result{
		Decision:   betterauth.Decision{Reason: betterauth.Allowed, Method: betterauth.MethodAPIKey, User: &betterauth.User{ID: "u1"}, CredentialID: "k1"},
		Verified:   betterauth.Identity{Method: betterauth.MethodAPIKey, UserID: "u1", CredentialID: "k1"},
		Credential: betterauth.Credential{Kind: betterauth.KindAPIKey, Source: betterauth.SourceAPIKeyHeader, Value: secret},
		Client:     netip.MustParseAddr("203.0.113.7"),
		Status:     200,
	}
}

func TestEventSet(t *testing.T) {
	var e Event
	e.Set("caddy", allowedKey())
	if e.Decision != Allow || e.Code != "OK" || e.Status != 200 || e.Method != "api_key" || e.UserID != "u1" || e.KeyID != "k1" ||
		e.SessionID != "" || e.ClientIP.String() != "203.0.113.7" || e.FrontEnd != "caddy" {
		t.Errorf("allowed key: %+v", e)
	}
	if e.Fingerprint != betterauth.Fingerprint(secret) || strings.Contains(e.Fingerprint, secret[:8]) {
		t.Errorf("fingerprint %q", e.Fingerprint)
	}

	// A verified key refused by a limit keeps who it was.
	res := allowedKey()
	res.Decision = betterauth.Decision{Reason: betterauth.RateLimitExceeded, Method: betterauth.MethodAPIKey}
	res.Status = 429
	e = Event{}
	e.Set("ext_authz", res)
	if e.Decision != Deny || e.Code != "RATE_LIMIT_EXCEEDED" || e.KeyID != "k1" || e.UserID != "u1" {
		t.Errorf("limited key: %+v", e)
	}

	// An unknown session token: its kind, no identity.
	res = &betterauth.Result{Decision: betterauth.Decision{Reason: betterauth.InvalidSession},
		Credential: betterauth.Credential{Kind: betterauth.KindSession, Value: "tok"}, Status: 401}
	e = Event{}
	e.Set("caddy", res)
	if e.Decision != Deny || e.Method != "session" || e.UserID != "" || e.SessionID != "" {
		t.Errorf("unknown session: %+v", e)
	}

	// A zone is dropped: PostgreSQL's inet would refuse it.
	res = allowedKey()
	res.Client = netip.MustParseAddr("fe80::1%eth0")
	e = Event{}
	e.Set("caddy", res)
	if e.ClientIP.String() != "fe80::1" {
		t.Errorf("client %v", e.ClientIP)
	}

	// A failed lookup is an error, not a denial.
	res = &betterauth.Result{Decision: betterauth.Decision{Reason: betterauth.BackendUnavailable}, Status: 503}
	e = Event{}
	e.Set("caddy", res)
	if e.Decision != Fail || e.Method != "" || e.Fingerprint != "" {
		t.Errorf("backend down: %+v", e)
	}
}

func TestLogModes(t *testing.T) {
	var none *Log
	if none.Wants(false) || NewLog(Off, zap.NewNop(), nil) != nil || NewLog(All, nil, nil) != nil {
		t.Error("an off log wants events")
	}
	d := NewLog(Denials, zap.NewNop(), nil)
	if d.Wants(true) || !d.Wants(false) {
		t.Error("denials")
	}
	a := NewLog(All, zap.NewNop(), nil)
	if !a.Wants(true) || !a.Wants(false) {
		t.Error("all")
	}
	for _, s := range []string{"", "all", "denials", "off"} {
		if _, err := ParseMode(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, err := ParseMode("deny"); err == nil {
		t.Error("deny parsed")
	}
}

// askedCall stands for mcp.Call.
type askedCall struct{ method, name string }

func (a askedCall) Target() (string, string) { return a.method, a.name }

func TestLogWritesFieldsAndNoSecret(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	l := NewLog(All, zap.New(core), nil)
	l.Decided("caddy", allowedKey(), "mcp.example.com", "/mcp\x00\n", askedCall{"tools/call", "delete\xff"})
	res := allowedKey()
	res.Decision, res.Status = betterauth.Decision{Reason: betterauth.InvalidAPIKey}, 401
	res.Verified = betterauth.Identity{}
	l.Decided("caddy", res, "mcp.example.com", "/", nil)
	if logs.Len() != 2 {
		t.Fatalf("%d events logged", logs.Len())
	}
	first := logs.All()[0].ContextMap()
	for k, want := range map[string]any{"decision": "allow", "code": "OK", "user_id": "u1", "key_id": "k1",
		"client_ip": "203.0.113.7", "host": "mcp.example.com", "mcp_method": "tools/call", "front_end": "caddy"} {
		if first[k] != want {
			t.Errorf("%s = %v, want %v", k, first[k], want)
		}
	}
	if p := first["path"].(string); strings.ContainsAny(p, "\x00\n") || !utf8.ValidString(first["mcp_name"].(string)) {
		t.Errorf("uncleaned fields: %q %q", p, first["mcp_name"])
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, secret) {
				t.Errorf("%s carries the key", k)
			}
		}
	}
	if second := logs.All()[1].ContextMap(); second["decision"] != "deny" || second["user_id"] != nil || second["credential_fingerprint"] == nil {
		t.Errorf("denial: %v", second)
	}
}

func TestClean(t *testing.T) {
	long := strings.Repeat("é", MaxField)
	for _, s := range []string{"plain", "a\x00b", "\xff\xfe", "tab\there", long, "del\x7f"} {
		c := clean(s)
		if !utf8.ValidString(c) || len(c) > MaxField || strings.ContainsAny(c, "\x00\t\x7f") {
			t.Errorf("clean(%q) = %q", s, c)
		}
	}
	if clean("/mcp/tools") != "/mcp/tools" {
		t.Error("clean changed a clean field")
	}
}

func TestBareName(t *testing.T) {
	for in, want := range map[string]string{
		"search": "search",
		"https://u:p@files.example.com/a?sig=x#p": "https://files.example.com/a",
		"demo://secret/1":                         "demo://secret/1",
		"postgres://app:pw@db/table":              "postgres://db/table",
		"file:///tmp/a?x":                         "file:///tmp/a",
		"mailto:a@b":                              "mailto:a@b",
	} {
		if got := bareName(in); got != want {
			t.Errorf("bareName(%q) = %q, want %q", in, got, want)
		}
	}
}
