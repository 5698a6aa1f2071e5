package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
	"github.com/caddy-betterauth/caddy-betterauth/caddyauth"
	"github.com/caddy-betterauth/caddy-betterauth/demo"
	"github.com/caddy-betterauth/caddy-betterauth/extauthz"
	"github.com/caddy-betterauth/caddy-betterauth/gateway"
)

// verdict is what a front end did with one request.
type verdict struct {
	status    int
	code      string            // the JSON body's code, on deny
	set       map[string]string // identity headers set, lower-case names
	removed   []string          // request headers removed, lower-case, sorted
	cookie    string            // the Cookie header the upstream gets
	challenge string
}

type frontEnd func(t *testing.T, hdr http.Header) verdict

// One table of requests, answered alike by the Caddy handler, the ext_authz
// gRPC server (called the way Envoy calls it) and the HTTP mode.
func TestFrontEndsAgree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "auth.db")
	creds, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	disabled, err := demo.Create(context.Background(), path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rw, _ := sql.Open("sqlite", "file:"+path)
	if _, err := rw.Exec(`UPDATE apikey SET enabled = 0 WHERE id = ?`, disabled.KeyID); err != nil {
		t.Fatal(err)
	}
	// No role: the gateway sets no X-Auth-User-Role, so a client's must go.
	if _, err := rw.Exec(`UPDATE "user" SET role = NULL`); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	const secret = "frontends-secret-0123456789abcdefghijklmnop"
	signed := betterauth.NewSigner(secret).Sign(creds.SessionToken)
	cookieSigned := strings.ReplaceAll(signed, "=", "%3D")
	dsn := "sqlite://" + path

	// The Caddy handler, provisioned as Caddy would.
	cctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	handler := &caddyauth.Handler{Options: gateway.Options{Database: dsn, Secret: secret}}
	if err := handler.Provision(cctx); err != nil {
		t.Fatal(err)
	}
	defer handler.Cleanup()
	viaCaddy := func(t *testing.T, hdr http.Header) verdict {
		req := httptest.NewRequest(http.MethodGet, "/mcp", nil)
		req.Header = hdr.Clone()
		before := names(req.Header)
		repl := caddy.NewReplacer()
		req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
		w := httptest.NewRecorder()
		var seen http.Header
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			seen = r.Header.Clone()
			return nil
		})
		if err := handler.ServeHTTP(w, req, next); err != nil {
			t.Fatal(err)
		}
		if seen == nil {
			return denied(w.Code, w.Header(), w.Body.Bytes())
		}
		v := verdict{status: 200, set: map[string]string{}}
		for name, vs := range seen {
			if betterauth.IsOwnedHeader(name) {
				v.set[strings.ToLower(name)] = vs[0]
			}
		}
		for _, name := range before {
			if _, ok := seen[http.CanonicalHeaderKey(name)]; !ok {
				v.removed = append(v.removed, name)
			}
		}
		slices.Sort(v.removed)
		v.cookie = strings.Join(seen.Values("Cookie"), "; ")
		return v
	}

	// The ext_authz server, assembled as the standalone binary does, on a
	// real gRPC server and client over loopback.
	opts := gateway.Options{Database: dsn, Secret: secret}
	gw, err := gateway.Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	gate, err := gw.Gate(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := extauthz.New(gate)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go gs.Serve(lis)
	defer gs.GracefulStop()
	viaGRPC := grpcFront(t, lis.Addr().String())

	// The HTTP mode, as forward-auth callers use it.
	hs := httptest.NewServer(srv)
	defer hs.Close()
	viaHTTP := httpFront(hs.URL)

	cases := []frontCase{
		{"x-api-key", http.Header{"X-Api-Key": {creds.APIKey}, "X-Auth-User-Id": {"forged"}, "X-Auth-Anything": {"x"}}, verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": creds.UserID, "x-auth-method": "api_key", "x-auth-key-id": creds.KeyID},
			removed: []string{"x-api-key", "x-auth-anything"}}},
		// A forged header named like an identity header this request does
		// not get (a key id on a session, a role the user lacks) is
		// removed, in any spelling; one it gets is overwritten.
		{"bearer session with forged identity headers", http.Header{"Authorization": {"Bearer " + signed},
			"X-Auth-Key-Id": {"forged"}, "X-Auth-User-Role": {"admin"}, "X-Auth-Session-Id": {"forged"}, "X_auth_user_role": {"admin"}}, verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": creds.UserID, "x-auth-method": "session", "x-auth-session-id": creds.SessionID},
			removed: []string{"authorization", "x-auth-key-id", "x-auth-user-role", "x_auth_user_role"}}},
		{"x-api-key with forged identity headers", http.Header{"X-Api-Key": {creds.APIKey},
			"X-Auth-Session-Id": {"forged"}, "X-Auth-User-Role": {"admin"}, "X-Auth-Key-Id": {"forged"}}, verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": creds.UserID, "x-auth-method": "api_key", "x-auth-key-id": creds.KeyID},
			removed: []string{"x-api-key", "x-auth-session-id", "x-auth-user-role"}}},
		{"bearer session", http.Header{"Authorization": {"Bearer " + signed}}, verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": creds.UserID, "x-auth-method": "session", "x-auth-session-id": creds.SessionID},
			removed: []string{"authorization"}}},
		{"cookie only", http.Header{"Cookie": {"better-auth.session_token=" + cookieSigned}}, verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": creds.UserID, "x-auth-method": "session", "x-auth-session-id": creds.SessionID},
			removed: []string{"cookie"}}},
		// Every credential Better-Auth would accept goes, whichever one was
		// used; other cookies and other Authorization schemes stay.
		{"x-api-key with a browser's session cookies", http.Header{"X-Api-Key": {creds.APIKey},
			"Cookie": {"theme=dark; better-auth.session_token=" + cookieSigned + "; better-auth.session_data=e30; lang=fr"}}, verdict{status: 200,
			set:     map[string]string{"x-auth-user-id": creds.UserID, "x-auth-method": "api_key"},
			removed: []string{"x-api-key"}, cookie: "theme=dark; lang=fr"}},
		{"bearer session with cookies beside", http.Header{"Authorization": {"Bearer " + signed},
			"Cookie": {"__Secure-better-auth.session_data.0=e30", "theme=dark"}}, verdict{status: 200,
			set:     map[string]string{"x-auth-method": "session"},
			removed: []string{"authorization"}, cookie: "theme=dark"}},
		{"session cookie beside another", http.Header{"Cookie": {"theme=dark; better-auth.session_token=" + cookieSigned}}, verdict{status: 200,
			set: map[string]string{"x-auth-method": "session"}, cookie: "theme=dark"}},
		{"x-api-key with a bearer value beside", http.Header{"X-Api-Key": {creds.APIKey}, "Authorization": {"Bearer junk"}}, verdict{status: 200,
			set: map[string]string{"x-auth-method": "api_key"}, removed: []string{"authorization", "x-api-key"}}},
		{"x-api-key with basic auth beside", http.Header{"X-Api-Key": {creds.APIKey}, "Authorization": {"Basic dXNlcjpwYXNz"}}, verdict{status: 200,
			set: map[string]string{"x-auth-method": "api_key"}, removed: []string{"x-api-key"}}},
		{"missing", http.Header{"X-Auth-User-Id": {"forged"}}, verdict{status: 401, code: "MISSING_CREDENTIAL", challenge: `Bearer realm="better-auth"`}},
		{"unknown key", http.Header{"X-Api-Key": {"ba_nope"}}, verdict{status: 401, code: "INVALID_API_KEY", challenge: "Bearer realm"}},
		{"key no database can hold", http.Header{"X-Api-Key": {"ba_\xff\xfe"}}, verdict{status: 401, code: "INVALID_API_KEY", challenge: "Bearer realm"}},
		{"disabled key", http.Header{"X-Api-Key": {disabled.APIKey}}, verdict{status: 401, code: "KEY_DISABLED", challenge: "Bearer realm"}},
		{"bad signature", http.Header{"Authorization": {"Bearer " + creds.SessionToken + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}, verdict{status: 401, code: "INVALID_SESSION", challenge: "Bearer realm"}},
	}
	checkFronts(t, map[string]frontEnd{"caddy": viaCaddy, "grpc": viaGRPC, "http": viaHTTP}, cases)
}

// frontCase is one request and the verdict every front end must reach.
type frontCase struct {
	name string
	hdr  http.Header
	want verdict
}

// checkFronts sends every case to every front end.
func checkFronts(t *testing.T, fronts map[string]frontEnd, cases []frontCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, fe := range fronts {
				got := fe(t, tc.hdr)
				w := tc.want
				if got.status != w.status || got.code != w.code || !strings.HasPrefix(got.challenge, w.challenge) {
					t.Errorf("%s: %d %s %q, want %d %s %q", name, got.status, got.code, got.challenge, w.status, w.code, w.challenge)
				}
				for k, v := range w.set {
					if got.set[k] != v {
						t.Errorf("%s: %s = %q, want %q (all: %v)", name, k, got.set[k], v, got.set)
					}
				}
				if w.status == 200 && (len(got.set) < len(w.set) || !slices.Equal(got.removed, w.removed)) {
					t.Errorf("%s: set %v removed %v, want removed %v", name, got.set, got.removed, w.removed)
				}
				if w.status == 200 && got.cookie != w.cookie {
					t.Errorf("%s: the upstream gets Cookie %q, want %q", name, got.cookie, w.cookie)
				}
			}
		})
	}
}

// grpcFront calls the ext_authz gRPC service at addr the way Envoy does.
func grpcFront(t *testing.T, addr string) frontEnd {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)
	return func(t *testing.T, hdr http.Header) verdict {
		// As Envoy sends it: lower-case names, repeated values joined.
		m := map[string]string{}
		for k, vs := range hdr {
			sep := ","
			if strings.EqualFold(k, "cookie") {
				sep = "; "
			}
			m[strings.ToLower(k)] = strings.Join(vs, sep)
		}
		httpReq := &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/mcp", Headers: m}
		for k, v := range m {
			if !utf8.ValidString(v) { // protobuf strings are UTF-8: Envoy sends raw bytes in header_map
				delete(m, k)
				if httpReq.HeaderMap == nil {
					httpReq.HeaderMap = &corev3.HeaderMap{}
				}
				httpReq.HeaderMap.Headers = append(httpReq.HeaderMap.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
			}
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: httpReq}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if d := resp.GetDeniedResponse(); d != nil {
			h := http.Header{}
			for _, o := range d.GetHeaders() {
				h.Set(o.GetHeader().GetKey(), o.GetHeader().GetValue())
			}
			if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
				t.Fatal("a denial with gRPC status OK")
			}
			return denied(int(d.GetStatus().GetCode()), h, []byte(d.GetBody()))
		}
		ok := resp.GetOkResponse()
		v := verdict{status: 200, set: map[string]string{}, removed: slices.Clone(ok.GetHeadersToRemove())}
		if !slices.Contains(v.removed, "cookie") {
			v.cookie = m["cookie"]
		}
		for _, o := range ok.GetHeaders() {
			if o.GetHeader().GetKey() == "cookie" {
				v.cookie = o.GetHeader().GetValue() // Envoy overwrites the client's
				continue
			}
			v.set[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		slices.Sort(v.removed)
		return v
	}
}

// httpFront calls the HTTP mode at base as forward-auth callers do.
func httpFront(base string) frontEnd {
	return func(t *testing.T, hdr http.Header) verdict {
		req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		req.Header = hdr.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return denied(resp.StatusCode, resp.Header, body)
		}
		v := verdict{status: 200, set: map[string]string{}}
		for name, vs := range resp.Header {
			if betterauth.IsOwnedHeader(name) {
				v.set[strings.ToLower(name)] = vs[0]
			}
		}
		if rm := resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"); rm != "" {
			v.removed = strings.Split(rm, ",")
		}
		slices.Sort(v.removed)
		// What nginx (auth_request_set) and Envoy (allowed_upstream_headers)
		// copy over the client's cookies.
		v.cookie = resp.Header.Get("Cookie")
		return v
	}
}

func denied(status int, h http.Header, body []byte) verdict {
	var b struct{ Code string }
	json.Unmarshal(body, &b)
	return verdict{status: status, code: b.Code, challenge: h.Get("WWW-Authenticate")}
}

func names(h http.Header) []string {
	var out []string
	for k := range h {
		out = append(out, strings.ToLower(k))
	}
	return out
}
