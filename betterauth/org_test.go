package betterauth

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"
)

const orgKey = "ba_orgLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"

// orgStore holds one key of configuration "org" whose referenceId names
// both an organization and a banned user: only the configuration says which
// owns it.
func orgStore(edit func(*APIKey)) *fakeStore {
	banned := alice()
	banned.ID, banned.Banned = "o1", true
	k := &APIKey{ID: "k1", ConfigID: "org", Enabled: true, ReferenceID: "o1", User: banned,
		Org: &Organization{ID: "o1", Slug: "acme", Name: "Acmé\r\nX-Auth-User-Id: forged"}}
	if edit != nil {
		edit(k)
	}
	return &fakeStore{keys: map[string]*APIKey{NewLookup(KindAPIKey, orgKey).KeyHash(): k}}
}

// An organization's key is checked against its organization: no user, no
// ban, INVALID_API_KEY without the organization row, and the same row is a
// user's key under a configuration that references users.
func TestVerifierOrganizationKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		edit    func(*APIKey)
		configs []string
		orgs    []string
		want    Reason
		org     bool
	}{
		{name: "organization key", configs: []string{"org"}, orgs: []string{"org"}, want: Allowed, org: true},
		{name: "the user's ban does not apply", configs: []string{"org"}, orgs: []string{"org"}, want: Allowed, org: true},
		{name: "missing organization", edit: func(k *APIKey) { k.Org = nil }, configs: []string{"org"}, orgs: []string{"org"}, want: InvalidAPIKey},
		{name: "disabled", edit: func(k *APIKey) { k.Enabled = false }, configs: []string{"org"}, orgs: []string{"org"}, want: KeyDisabled},
		{name: "expired", edit: func(k *APIKey) { k.ExpiresAt = t0.Add(-time.Second) }, configs: []string{"org"}, orgs: []string{"org"}, want: KeyExpired},
		{name: "exhausted", edit: func(k *APIKey) { k.HasRemaining = true }, configs: []string{"org"}, orgs: []string{"org"}, want: UsageExceeded},
		{name: "configuration not accepted", configs: []string{"default"}, orgs: []string{"org"}, want: InvalidAPIKey},
		{name: "a user configuration: the user decides", configs: []string{"org"}, want: UserBanned},
		{name: "a user configuration without the user", edit: func(k *APIKey) { k.User = nil }, configs: []string{"org"}, want: InvalidAPIKey},
		{name: "default spelled empty", edit: func(k *APIKey) { k.ConfigID = "" }, configs: []string{"default"}, orgs: []string{""}, want: Allowed, org: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := NewVerifier(Options{Store: orgStore(tc.edit), ConfigIDs: tc.configs, OrgConfigIDs: tc.orgs, Now: func() time.Time { return t0 }})
			d, err := v.Verify(context.Background(), apiKeyCred(orgKey))
			if err != nil || d.Reason != tc.want {
				t.Fatalf("%v (%v), want %v", d.Reason, err, tc.want)
			}
			if tc.org && (d.Org == nil || d.User != nil || d.Org.ID != "o1") {
				t.Fatalf("owner: user %v org %v", d.User, d.Org)
			}
		})
	}
}

// An organization's key sends the organization's headers, encoded, and no
// user's; a session sends its active organization and role.
func TestOrganizationHeaders(t *testing.T) {
	t.Parallel()
	v, _ := NewVerifier(Options{Store: orgStore(nil), ConfigIDs: []string{"org"}, OrgConfigIDs: []string{"org"}})
	for _, sealed := range []bool{false, true} {
		d, _ := v.Verify(context.Background(), apiKeyCred(orgKey))
		if sealed {
			Record{APIKey: &APIKey{ID: "k1", Org: d.Org, User: alice()}}.Seal()
		}
		got := d.AppendHeaders(nil)
		want := []Header{{HeaderOrgID, "o1"}, {HeaderOrgSlug, "acme"}, {HeaderOrgName, "Acm%C3%A9%0D%0AX-Auth-User-Id: forged"},
			{HeaderMethod, "api_key"}, {HeaderKeyID, "k1"}}
		if !slices.Equal(got, want) {
			t.Fatalf("sealed %v: %v, want %v", sealed, got, want)
		}
	}

	sess := &Session{ID: "s1", ExpiresAt: t0.Add(time.Hour), User: alice(), Org: &Membership{OrgID: "o1", Role: "owner,admin"}}
	d := checkSession(sess, t0)
	want := []Header{{HeaderUserID, "u1"}, {HeaderUserEmail, "alice@example.com"}, {HeaderUserName, "Alice"}, {HeaderUserRole, "user"},
		{HeaderOrgID, "o1"}, {HeaderOrgRole, "owner,admin"}, {HeaderMethod, "session"}, {HeaderSessionID, "s1"}}
	if got := d.AppendHeaders(nil); !slices.Equal(got, want) || len(want) != MaxHeaders {
		t.Fatalf("%v, want %v (all %d)", got, want, MaxHeaders)
	}
	sess.Org = nil
	if got := checkSession(sess, t0).AppendHeaders(nil); slices.ContainsFunc(got, func(h Header) bool { return h.Name == HeaderOrgID }) {
		t.Fatalf("a session without an active organization sends %v", got)
	}
}

// require_org_role compares the member's roles exactly; sessions without
// an active organization and API keys fail it; require_role refuses an
// organization's key, which has no user.
func TestGateOrgRules(t *testing.T) {
	t.Parallel()
	const token = vecToken
	member := func(role string) *Membership { return &Membership{OrgID: "o1", Role: role} }
	for _, tc := range []struct {
		name   string
		member *Membership
		key    bool
		rules  Rules
		want   Reason
	}{
		{"member with the role", member("member,admin"), false, Rules{OrgRoles: []string{"admin"}}, Allowed},
		{"one of the roles", member("owner"), false, Rules{OrgRoles: []string{"admin", "owner"}}, Allowed},
		{"role not held", member("member"), false, Rules{OrgRoles: []string{"admin"}}, InsufficientOrgRole},
		{"letter case counts", member("Admin"), false, Rules{OrgRoles: []string{"admin"}}, InsufficientOrgRole},
		{"no active organization", nil, false, Rules{OrgRoles: []string{"admin"}}, InsufficientOrgRole},
		{"the user's role is not the member's", member("member"), false, Rules{OrgRoles: []string{"user"}}, InsufficientOrgRole},
		{"an organization's key", nil, true, Rules{OrgRoles: []string{"admin"}}, InsufficientOrgRole},
		{"require_role and an organization's key", nil, true, Rules{Roles: []string{"user"}}, InsufficientRole},
		{"an organization's key without rules", nil, true, Rules{}, Allowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := orgStore(nil)
			store.sessions = map[string]*Session{token: {ID: "s1", ExpiresAt: time.Now().Add(time.Hour), User: alice(), Org: tc.member}}
			v, _ := NewVerifier(Options{Store: store, Secret: vecSecret, ConfigIDs: []string{"org"}, OrgConfigIDs: []string{"org"}})
			g := NewGate(GateConfig{Verifier: v, Rules: tc.rules})
			hdr := HTTPHeader{"Authorization": {"Bearer " + NewSigner(vecSecret).Sign(token)}, "X-Auth-Org-Role": {"admin"}}
			if tc.key {
				hdr = HTTPHeader{"X-Api-Key": {orgKey}, "X-Auth-Org-Id": {"forged"}}
			}
			res := g.Decide(context.Background(), hdr, netip.Addr{})
			if res.Decision.Reason != tc.want || res.Status != tc.want.Outcome().Status {
				t.Fatalf("%v %d, want %v", res.Decision.Reason, res.Status, tc.want)
			}
			res.Strip(hdr, nil)
			if len(hdr["X-Auth-Org-Role"])+len(hdr["X-Auth-Org-Id"]) != 0 {
				t.Fatalf("a client's organization header got through: %v", hdr)
			}
		})
	}
	if err := (Rules{OrgRoles: []string{"a,b"}}).Validate(); err == nil {
		t.Error("an organization role with a comma validated")
	}
	if o := InsufficientOrgRole.Outcome(); o.Status != 403 || o.Code != "INSUFFICIENT_ORG_ROLE" {
		t.Errorf("outcome %+v", o)
	}
}
