package betterauth

import (
	"net/http"
	"strings"
	"testing"
)

func TestExtractorChoosesOneCredential(t *testing.T) {
	t.Parallel()
	const key = "ba_sgcryLxAZNSEehSEODGkbVrwreJKkSsEfciuHrogTDZBeKFjuPwWzTDKeEkrDGbp"
	def := NewExtractor(ExtractorConfig{})
	prefixed := NewExtractor(ExtractorConfig{APIKeyPrefixes: []string{"ba_"}})
	strict := NewExtractor(ExtractorConfig{RequireSignature: true})
	tests := []struct {
		name   string
		ex     *Extractor
		header http.Header
		kind   Kind
		source Source
		value  string
	}{
		{"nothing", def, http.Header{}, KindNone, SourceNone, ""},
		{"x-api-key", def, http.Header{"X-Api-Key": {key}}, KindAPIKey, SourceAPIKeyHeader, key},
		{"x-api-key trimmed", def, http.Header{"X-Api-Key": {"  " + key + " "}}, KindAPIKey, SourceAPIKeyHeader, key},
		{"empty x-api-key is absent", def, http.Header{"X-Api-Key": {" "}, "Authorization": {"Bearer " + key}}, KindAPIKey, SourceBearer, key},
		{"x-api-key before bearer", def, http.Header{"X-Api-Key": {key}, "Authorization": {"Bearer " + vecBearerSigned}}, KindAPIKey, SourceAPIKeyHeader, key},
		{"bearer before cookie", def, http.Header{"Authorization": {"Bearer " + key}, "Cookie": {"better-auth.session_token=" + vecCookie}}, KindAPIKey, SourceBearer, key},
		{"duplicate x-api-key is invalid", def, http.Header{"X-Api-Key": {key, "other"}}, KindInvalid, SourceAPIKeyHeader, ""},
		{"duplicate authorization is invalid", def, http.Header{"Authorization": {"Bearer a", "Bearer b"}}, KindInvalid, SourceBearer, ""},
		{"oversized key is invalid", def, http.Header{"X-Api-Key": {strings.Repeat("a", MaxCredentialLen+1)}}, KindInvalid, SourceAPIKeyHeader, ""},
		{"scheme is case-insensitive", def, http.Header{"Authorization": {"bEaReR " + key}}, KindAPIKey, SourceBearer, key},
		{"basic auth is not ours", def, http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, KindNone, SourceNone, ""},
		{"basic auth then cookie", def, http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}, "Cookie": {"a=b; better-auth.session_token=" + vecCookie}}, KindSession, SourceCookie, vecCookie},
		{"signed bearer is a session", def, http.Header{"Authorization": {"Bearer " + vecBearerSigned}}, KindSession, SourceBearer, vecBearerSigned},
		{"raw token is either", def, http.Header{"Authorization": {"Bearer " + vecToken}}, KindEither, SourceBearer, vecToken},
		{"raw token with key prefixes is a session", prefixed, http.Header{"Authorization": {"Bearer " + vecToken}}, KindSession, SourceBearer, vecToken},
		{"prefixed key", prefixed, http.Header{"Authorization": {"Bearer " + key}}, KindAPIKey, SourceBearer, key},
		{"raw token refused when signatures required", strict, http.Header{"Authorization": {"Bearer " + vecToken}}, KindAPIKey, SourceBearer, vecToken},
		{"secure cookie first", def, http.Header{"Cookie": {"better-auth.session_token=plain; __Secure-better-auth.session_token=" + vecCookie}}, KindSession, SourceCookie, vecCookie},
		{"cookie split over headers", def, http.Header{"Cookie": {"a=1", "better-auth.session_token=" + vecCookie}}, KindSession, SourceCookie, vecCookie},
		{"first duplicate cookie wins", def, http.Header{"Cookie": {"better-auth.session_token=" + vecCookie + "; better-auth.session_token=stale"}}, KindSession, SourceCookie, vecCookie},
		{"cookie name padded with NBSP", def, http.Header{"Cookie": {"\xa0better-auth.session_token=" + vecCookie}}, KindSession, SourceCookie, vecCookie},
		{"cookie name with blanks", def, http.Header{"Cookie": {"a=1;  better-auth.session_token =" + vecCookie}}, KindSession, SourceCookie, vecCookie},
		{"other cookies only", def, http.Header{"Cookie": {"theme=dark; better-auth.session_data=x"}}, KindNone, SourceNone, ""},
		{"custom header", NewExtractor(ExtractorConfig{APIKeyHeaders: []string{"api-key"}}), http.Header{"Api-Key": {key}, "X-Api-Key": {"ignored"}}, KindAPIKey, SourceAPIKeyHeader, key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.ex.Extract(HTTPHeader(tt.header))
			if c.Kind != tt.kind || c.Source != tt.source || c.Value != tt.value {
				t.Fatalf("got %+v, want kind %v source %v value %q", c, tt.kind, tt.source, tt.value)
			}
		})
	}
}

func TestIsOwnedHeader(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"X-Auth-User-Id": true, "x-auth-user-id": true, "X-AUTH-ANYTHING": true, "x_auth_user_id": true,
		"X_Auth-Role": true, "X-Auth-": true, "X-Auth": false, "X-Authorization": false, "Authorization": false, "X-Api-Key": false,
	} {
		if got := IsOwnedHeader(name); got != want {
			t.Errorf("IsOwnedHeader(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestEncodeHeaderValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Alice":                             "Alice",
		"a@b.example":                       "a@b.example",
		"Zoë":                               "Zo%C3%AB",
		"50%":                               "50%25",
		"x\r\nSet-Cookie: a":                "x%0D%0ASet-Cookie: a",
		"tab\there\x00\x7f":                 "tab%09here%00%7F",
		"":                                  "",
		strings.Repeat("é", MaxHeaderValue): strings.Repeat("%C3%A9", MaxHeaderValue/2),
		// Not UTF-8: backed up at most a character's length, not to nothing.
		strings.Repeat("\x98", 2*MaxHeaderValue): strings.Repeat("%98", MaxHeaderValue-3),
	} {
		if got := EncodeHeaderValue(in); got != want {
			t.Errorf("EncodeHeaderValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRemoveCookies(t *testing.T) {
	t.Parallel()
	names := SessionCookieNames("", "")
	drop := func(n string) bool {
		for _, s := range names {
			if n == s {
				return true
			}
		}
		return false
	}
	got := RemoveCookies([]string{"a=1; better-auth.session_token=x.y", "__Secure-better-auth.session_token=z; b=2"}, drop)
	if got != "a=1; b=2" {
		t.Fatalf("got %q", got)
	}
	if got := RemoveCookies([]string{"better-auth.session_token=x"}, drop); got != "" {
		t.Fatalf("got %q, want empty", got)
	}
}

// A cookie name is read as Better-Auth reads it (Latin-1, JavaScript's
// trim) when extracting as when removing: after a Unicode space such as
// U+2003 (bytes Better-Auth reads as letters) it is no session cookie,
// and stays in the header; before, Extract took it and Strip left it.
func TestCookieNameAfterUnicodeSpace(t *testing.T) {
	t.Parallel()
	e := NewExtractor(ExtractorConfig{})
	for _, cookie := range []string{"a=1;\u2003better-auth.session_token=t.s", "\u0085better-auth.session_token=t.s", "\u3000better-auth.session_token=t.s"} {
		h := HTTPHeader{"Cookie": {cookie}}
		if c := e.Extract(h); c.Kind != KindNone {
			t.Errorf("%q: extracted %+v", cookie, c)
		}
	}
	h := HTTPHeader{"Cookie": {" \xa0better-auth.session_token=t.s "}}
	if c := e.Extract(h); c.Source != SourceCookie || c.Value != "t.s" {
		t.Errorf("U+00A0 (one byte, as Latin-1): extracted %+v", c)
	}
	e.RemoveCredentials(h)
	if len(h) != 0 {
		t.Errorf("left %q", h)
	}
}

// An empty session cookie is no credential: Better-Auth reads it as no
// session, and the shield must not count it as a guess.
func TestEmptySessionCookieIsNoCredential(t *testing.T) {
	t.Parallel()
	e := NewExtractor(ExtractorConfig{})
	for _, cookie := range []string{"better-auth.session_token=", "better-auth.session_token= ; theme=dark", `better-auth.session_token=""`} {
		if c := e.Extract(HTTPHeader{"Cookie": {cookie}}); c.Kind != KindNone {
			t.Errorf("%q: %+v", cookie, c)
		}
	}
}
