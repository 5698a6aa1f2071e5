package betterauth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// Metadata in every shape Better-Auth and its storages give it, and what
// the allow-list read from it admits.
func TestParseAllowedIPs(t *testing.T) {
	t.Parallel()
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"10.0.%d.%d"`, i/256, i%256)
		}
		return `{"allowedIps":[` + b.String() + `]}`
	}
	const (
		unrestricted = iota
		restricted   // read: admits the listed addresses only
		closed       // malformed: admits nobody
	)
	for _, tc := range []struct {
		name, metadata string
		want           int
		admits, not    []string
	}{
		{"no metadata (NULL)", ``, unrestricted, nil, nil},
		{"no metadata (Better-Auth's literal null)", `null`, unrestricted, nil, nil},
		{"other fields only", `{"plan":"pro","ips":["10.0.0.1"]}`, unrestricted, nil, nil},
		{"letter case counts in the field name", `{"allowedIPs":["10.0.0.1"]}`, unrestricted, nil, nil},
		{"metadata not an object", `[1,2]`, unrestricted, nil, nil},
		{"a list", `{"plan":"pro","allowedIps":["10.0.0.0/8","203.0.113.7","2001:db8::/32"]}`, restricted,
			[]string{"10.1.2.3", "203.0.113.7", "::ffff:10.9.9.9", "2001:db8::1"}, []string{"11.0.0.1", "203.0.113.8", "2001:db9::1"}},
		{"IPv4-mapped entry", `{"allowedIps":["::ffff:192.0.2.0/120"]}`, restricted, []string{"192.0.2.9", "::ffff:192.0.2.9"}, []string{"192.0.3.1"}},
		{"double-stringified (better-auth 1.4 and earlier)", `"{\"allowedIps\":[\"192.0.2.1\"]}"`, restricted, []string{"192.0.2.1"}, []string{"192.0.2.2"}},
		{"surrounding space", " \n{\"allowedIps\": [\"192.0.2.1\"]} ", restricted, []string{"192.0.2.1"}, []string{"192.0.2.2"}},
		{"the last of duplicate members, as JSON.parse", `{"allowedIps":["192.0.2.1"],"allowedIps":["192.0.2.2"]}`, restricted, []string{"192.0.2.2"}, []string{"192.0.2.1"}},
		{"at the bound", many(MaxAllowedIPs), restricted, []string{"10.0.0.255"}, []string{"10.0.1.0"}},

		{"past the bound", many(MaxAllowedIPs + 1), closed, nil, nil},
		{"empty list", `{"allowedIps":[]}`, closed, nil, nil},
		{"null list", `{"allowedIps":null}`, closed, nil, nil},
		{"a string, not a list", `{"allowedIps":"10.0.0.1"}`, closed, nil, nil},
		{"an object", `{"allowedIps":{"0":"10.0.0.1"}}`, closed, nil, nil},
		{"a number among strings", `{"allowedIps":["10.0.0.1",7]}`, closed, nil, nil},
		{"a null entry", `{"allowedIps":["10.0.0.1",null]}`, closed, nil, nil},
		{"a typo", `{"allowedIps":["10.0.0.1","10.0.0.300"]}`, closed, nil, nil},
		{"host bits set", `{"allowedIps":["10.0.0.1/8"]}`, closed, nil, nil},
		{"a zone", `{"allowedIps":["fe80::1%eth0"]}`, closed, nil, nil},
		{"a host name", `{"allowedIps":["example.com"]}`, closed, nil, nil},
		{"space in an entry", `{"allowedIps":[" 10.0.0.1"]}`, closed, nil, nil},
		{"a long entry", `{"allowedIps":["` + strings.Repeat("1", 100) + `"]}`, closed, nil, nil},
		{"metadata that is not JSON", `{"allowedIps":["10.0.0.1"]`, closed, nil, nil},
		{"metadata text that is not JSON", `allowedIps`, closed, nil, nil},
		{"a string holding no JSON", `"not json"`, closed, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := ParseAllowedIPs([]byte(tc.metadata), "allowedIps")
			switch {
			case tc.want == unrestricted:
				if l != nil {
					t.Fatalf("restricted: %+v", l)
				}
				if !l.Admits(netip.MustParseAddr("198.51.100.1")) {
					t.Fatal("an unrestricted key refused an address")
				}
				return
			case l == nil:
				t.Fatal("unrestricted")
			case tc.want == closed:
				if len(l.Prefixes) != 0 || l.Problem == "" {
					t.Fatalf("a malformed list read as %+v", l)
				}
				for _, a := range []string{"10.0.0.1", "10.0.0.2", "::1", "fe80::1"} {
					if l.Admits(netip.MustParseAddr(a)) {
						t.Fatalf("a malformed list admits %s", a)
					}
				}
				if strings.Contains(l.Problem, strings.Repeat("1", 100)) {
					t.Fatalf("the problem quotes a long entry: %s", l.Problem)
				}
				return
			case l.Problem != "":
				t.Fatalf("problem %q", l.Problem)
			}
			for _, a := range tc.admits {
				if !l.Admits(netip.MustParseAddr(a)) {
					t.Errorf("%s refused", a)
				}
			}
			for _, a := range tc.not {
				if l.Admits(netip.MustParseAddr(a)) {
					t.Errorf("%s admitted", a)
				}
			}
			if l.Admits(netip.Addr{}) {
				t.Error("an unknown client admitted")
			}
		})
	}
}

// A key's own allow-list, applied by the gate after the lookup and the
// route's rules, on the decision and on a stream's recheck.
func TestGateKeyAllowedIPs(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	listed, other := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.1")
	for _, tc := range []struct {
		name     string
		metadata string
		rules    Rules
		client   netip.Addr
		want     Reason
		problem  bool // the refusal is heard as a malformed list
	}{
		{"no list: any address", `{"plan":"pro"}`, Rules{}, other, Allowed, false},
		{"no list: an unknown address", `null`, Rules{}, netip.Addr{}, Allowed, false},
		{"listed", `{"allowedIps":["203.0.113.0/24"]}`, Rules{}, listed, Allowed, false},
		{"listed, mapped", `{"allowedIps":["203.0.113.0/24"]}`, Rules{}, netip.MustParseAddr("::ffff:203.0.113.7"), Allowed, false},
		{"not listed", `{"allowedIps":["203.0.113.0/24"]}`, Rules{}, other, IPNotAllowed, false},
		{"unknown address", `{"allowedIps":["203.0.113.0/24"]}`, Rules{}, netip.Addr{}, IPNotAllowed, false},
		{"malformed: even the address meant", `{"allowedIps":["203.0.113.7","203.0.113.300"]}`, Rules{}, listed, IPNotAllowed, true},
		{"the route's rules first", `{"allowedIps":["203.0.113.0/24"]}`, Rules{Roles: []string{"admin"}}, other, InsufficientRole, false},
		{"the route admits, the key does not", `{"allowedIps":["203.0.113.0/24"]}`,
			Rules{AllowIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}, other, IPNotAllowed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &APIKey{ID: "k1", ConfigID: "default", Enabled: true, User: alice(),
				AllowedIPs: ParseAllowedIPs([]byte(tc.metadata), "allowedIps")}
			store := &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, key).KeyHash(): k}}
			v, _ := NewVerifier(Options{Store: store})
			var mu sync.Mutex
			var heard []string
			g := NewGate(GateConfig{Verifier: v, Rules: tc.rules, KeyAllowedIPs: true, OnKeyIPProblem: func(id, problem string) {
				mu.Lock()
				heard = append(heard, id+": "+problem)
				mu.Unlock()
			}})
			if !g.WantsClient() {
				t.Fatal("a gate reading key allow-lists does not ask for the client address")
			}
			hdr := HTTPHeader{"X-Api-Key": {key}, "X-Auth-User-Id": {"forged"}}
			res := g.Decide(context.Background(), hdr, tc.client)
			if res.Decision.Reason != tc.want || res.Status != tc.want.Outcome().Status {
				t.Fatalf("%v (%d), want %v", res.Decision.Reason, res.Status, tc.want)
			}
			if g.Recheck(context.Background(), res.Credential, tc.client) != (tc.want == Allowed) {
				t.Fatal("the recheck disagrees")
			}
			if tc.want == Allowed {
				return
			}
			res.Strip(hdr, nil)
			if len(res.Decision.AppendHeaders(nil)) != 0 || len(hdr["X-Auth-User-Id"]) != 0 || res.Decision.CredentialID != "" {
				t.Fatalf("a refusal kept an identity: %+v %v", res.Decision, hdr)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.problem != (len(heard) > 0) || (tc.problem && !strings.HasPrefix(heard[0], "k1: metadata.allowedIps[1]")) {
				t.Fatalf("heard %q", heard)
			}
		})
	}
}

// Without the option, a gate does not ask for the client's address.
func TestGateKeyAllowedIPsOff(t *testing.T) {
	t.Parallel()
	v, _ := NewVerifier(Options{Store: &fakeStore{}})
	if NewGate(GateConfig{Verifier: v}).WantsClient() {
		t.Fatal("a gate without address rules, shield or key allow-lists asks for the client address")
	}
}
