package betterauth

import (
	"net/http"
	"reflect"
	"testing"
)

func TestRemoveCredentials(t *testing.T) {
	t.Parallel()
	e := NewExtractor(ExtractorConfig{APIKeyHeaders: []string{"x-api-key", "api-key"}, CookiePrefix: "app"})
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"every key header", http.Header{"X-Api-Key": {"k"}, "Api-Key": {"k2"}, "Accept": {"*/*"}}, http.Header{"Accept": {"*/*"}}},
		{"bearer in any case", http.Header{"Authorization": {"bEaReR x"}}, http.Header{}},
		{"empty bearer", http.Header{"Authorization": {"Bearer"}}, http.Header{}},
		{"basic stays", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}},
		{"bearerish scheme stays", http.Header{"Authorization": {"Bearerx y"}}, http.Header{"Authorization": {"Bearerx y"}}},
		{"session cookies of the prefix", http.Header{"Cookie": {"a=1; app.session_token=t.s; __Secure-app.session_data.2=x", "app.session_data=y; b=2"}},
			http.Header{"Cookie": {"a=1; b=2"}}},
		{"other prefixes stay", http.Header{"Cookie": {"better-auth.session_token=t.s"}}, http.Header{"Cookie": {"better-auth.session_token=t.s"}}},
		{"only session cookies", http.Header{"Cookie": {"app.session_token=t.s"}}, http.Header{}},
		{"names with blanks around them", http.Header{"Cookie": {"a=1; app.session_token =t.s;\tapp.session_data\t=x"}}, http.Header{"Cookie": {"a=1"}}},
		{"the account cookie", http.Header{"Cookie": {"app.account_data=x; __Secure-app.account_data.1=y; b=2"}}, http.Header{"Cookie": {"b=2"}}},
		{"plugins' credential cookies", http.Header{"Cookie": {"app.admin_session=t%3A.s; __Secure-app.session_token_multi-abc=t.s; app.session_token_multi-x=t.s; app.two_factor=s; app.trust_device=s; app.dont_remember=x"}},
			http.Header{"Cookie": {"app.dont_remember=x"}}},
		{"names padded as Node trims them", http.Header{"Cookie": {"\xa0app.session_token=t.s; app.session_data\xa0=x; b=2"}}, http.Header{"Cookie": {"b=2"}}},
		{"look-alike names stay", http.Header{"Cookie": {"app.session_datax=1; app.admin_sessions=2"}}, http.Header{"Cookie": {"app.session_datax=1; app.admin_sessions=2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := tt.in.Clone()
			e.RemoveCredentials(HTTPHeader(h))
			if !reflect.DeepEqual(h, tt.want) {
				t.Fatalf("got %v, want %v", h, tt.want)
			}
		})
	}
}

func TestFilterConnection(t *testing.T) {
	t.Parallel()
	e := NewExtractor(ExtractorConfig{APIKeyHeaders: []string{"api-key"}})
	tests := []struct {
		in      []string
		want    string
		changed bool
	}{
		{[]string{"keep-alive, Upgrade"}, "", false},
		{[]string{"X-Auth-User-Id"}, "", true},
		{[]string{"keep-alive, x_auth_user_role ,Upgrade", "API_KEY, x-other"}, "keep-alive, Upgrade, x-other", true},
		{[]string{"authorization,COOKIE"}, "", true},
		{[]string{"X-Api-Key"}, "", false}, // not a key header here
	}
	for _, tt := range tests {
		got, changed := e.FilterConnection(tt.in)
		if got != tt.want || changed != tt.changed {
			t.Errorf("%q: got %q %v, want %q %v", tt.in, got, changed, tt.want, tt.changed)
		}
	}
}

func TestCredentialsNoDatabaseCanHold(t *testing.T) {
	t.Parallel()
	e := NewExtractor(ExtractorConfig{})
	for _, h := range []http.Header{
		{"X-Api-Key": {"ba_\xffkey"}},
		{"X-Api-Key": {"ba_\x00key"}},
		{"Authorization": {"Bearer \xc3\x28abc"}},
		{"Cookie": {"better-auth.session_token=tok\xfe.sig"}},
	} {
		if c := e.Extract(HTTPHeader(h)); c.Kind != KindInvalid || c.Value != "" {
			t.Errorf("%q: got %+v, want an invalid credential", h, c)
		}
	}
	if c := e.Extract(HTTPHeader(http.Header{"X-Api-Key": {"ba_clé"}})); c.Kind != KindAPIKey {
		t.Errorf("valid UTF-8 refused: %+v", c)
	}
}
