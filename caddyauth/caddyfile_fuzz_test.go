package caddyauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile checks the better_auth directive's parser on any
// input: it never panics; what it parses marshals to JSON that reads back
// to the same JSON; parsing again gives the same config; and validating the
// parsed config and its JSON copy says the same.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	f.Add("better_auth")
	f.Add("better_auth {\n database {env.DATABASE_URL}\n secret {env.BETTER_AUTH_SECRET}\n require_signature\n api_key_header x-api-key api-key\n}")
	f.Add("better_auth {\n cache {\n ttl 30s\n jitter 0.1\n max_entries 100\n }\n rate_limit a {\n key user\n rate 5/1m\n burst 2\n }\n}")
	f.Add("better_auth {\n schema {\n table user users\n column user.email email_address\n naming snake\n }\n oauth {\n resource https://mcp.example.com/mcp\n }\n}")
	f.Add("better_auth {\n redis redis://x {\n key k\n }\n secondary_storage {\n url redis://y\n sessions storage\n }\n}")
	f.Add("better_auth {\n api_key_config a {\n references organization\n rate_limit off\n }\n usage database {\n flush_interval 1s\n }\n}")
	f.Add("better_auth {\n lookup_timeout 0s\n require_permission files read write\n}")
	files, _ := filepath.Glob("testdata/*.caddyfiletest")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		caddyfileText, _, _ := strings.Cut(string(b), "\n----------")
		if i := strings.Index(caddyfileText, "better_auth"); i >= 0 {
			f.Add(caddyfileText[i:])
		}
	}
	f.Fuzz(func(t *testing.T, input string) {
		parse := func() (*Handler, error) {
			tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
			if err != nil || len(tokens) == 0 {
				return nil, fmt.Errorf("no tokens: %v", err)
			}
			var h Handler
			return &h, h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
		}
		var h *Handler
		var err error
		done := make(chan struct{})
		go func() { defer close(done); h, err = parse() }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Fatalf("parsing %q does not end", input)
		}
		if err != nil {
			return
		}
		out, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("%q parses but does not marshal: %v", input, err)
		}
		var back Handler
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%s does not unmarshal: %v", out, err)
		}
		again, err := json.Marshal(&back)
		if err != nil || !bytes.Equal(out, again) {
			t.Fatalf("JSON round trip:\n%s\n%s (%v)", out, again, err)
		}
		h2, err := parse()
		if err != nil {
			t.Fatalf("%q parsed once, then: %v", input, err)
		}
		if out2, _ := json.Marshal(h2); !bytes.Equal(out, out2) {
			t.Fatalf("%q parses differently:\n%s\n%s", input, out, out2)
		}
		if e1, e2 := h.Validate(), back.Validate(); fmt.Sprint(e1) != fmt.Sprint(e2) {
			t.Fatalf("%s: Validate says %v, of its JSON copy %v", out, e1, e2)
		}
	})
}
