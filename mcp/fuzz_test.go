package mcp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks Parse against encoding/json: what Parse accepts is
// JSON, and encoding/json (the Go SDK's reader, which matches members in
// any letter case and takes the last of duplicates) reads from it the same
// messages, methods, ids and targets as the gateway judged.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_item","arguments":{"id":7}}}`,
		`{"params":{"arguments":{"name":"decoy"},"name":"whoami"},"method":"tools/call","id":"a","jsonrpc":"2.0"}`,
		`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"review","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"review"}}}`,
		`{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{x}"}}}`,
		`{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["file:///a","file:///b"]}}}`,
		`[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":9,"result":{}},{"jsonrpc":"2.0","id":null,"error":{"code":-1}}]`,
		`{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"\u0064elete_\u00e9t\u00E9 \ud83d\ude00"}}`,
		"\xef\xbb\xbf {\"jsonrpc\":\"2.0\",\"id\":1e3,\"method\":\"tools/list\",\"params\":[]}\n",
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}`,
		`{"jsonrpc":"2.0","id":-0.5e-3,"method":"initialize","params":{"x":[[[{"a":[true,false,null]}]]]}}`,
		`[]`, ``, `{}`, `[{}]`, `{"jsonrpc":"2.0","method":"x"} x`,
	} {
		f.Add([]byte(s))
	}
	var body Body
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := Parse(b, &body); err != nil {
			return
		}
		raw := bytes.TrimPrefix(b, bom)
		if !json.Valid(raw) || !utf8.Valid(raw) {
			t.Fatalf("accepted %q, which is not JSON", b)
		}
		var msgs []stdMessage
		if body.Batch {
			if err := json.Unmarshal(raw, &msgs); err != nil {
				t.Fatalf("batch %q: encoding/json: %v", b, err)
			}
		} else {
			var m stdMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatalf("%q: encoding/json: %v", b, err)
			}
			msgs = []stdMessage{m}
		}
		if len(msgs) != len(body.Messages) {
			t.Fatalf("%q: %d messages, encoding/json reads %d", b, len(body.Messages), len(msgs))
		}
		for i, m := range msgs {
			got := body.Messages[i]
			if m.JSONRPC != "2.0" {
				t.Fatalf("%q: jsonrpc %q accepted", b, m.JSONRPC)
			}
			if (m.Method == nil) != (got.Method == nil) || m.Method != nil && *m.Method != string(got.Method) {
				t.Fatalf("%q: method %q, encoding/json reads %v", b, got.Method, m.Method)
			}
			if got.ID != nil && !bytes.Equal(got.ID, m.ID) {
				t.Fatalf("%q: id %s, encoding/json reads %s", b, got.ID, m.ID)
			}
			var want []Target
			if m.Method != nil {
				want = m.targets(t)
			}
			if !sameTargets(body.TargetsOf(i), want) {
				t.Fatalf("%q: targets %q, encoding/json reads %q", b, body.TargetsOf(i), want)
			}
		}
	})
}

// stdMessage is a message as encoding/json reads it.
type stdMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  *string         `json:"method"`
	ID      json.RawMessage `json:"id"`
	Params  json.RawMessage `json:"params"`
}

type stdParams struct {
	Name *string `json:"name"`
	URI  *string `json:"uri"`
	Ref  *struct {
		Type *string `json:"type"`
		Name *string `json:"name"`
		URI  *string `json:"uri"`
	} `json:"ref"`
	Notifications *struct {
		ResourceSubscriptions []string `json:"resourceSubscriptions"`
	} `json:"notifications"`
}

// targets are what the message asks to use, read by encoding/json.
func (m stdMessage) targets(t *testing.T) []Target {
	var p stdParams
	// Parse reads the members it needs whatever their neighbours' types;
	// decode them one by one so that a mistyped member elsewhere (which
	// encoding/json reports after filling what it could) does not matter.
	var members map[string]json.RawMessage
	if json.Unmarshal(m.Params, &members) == nil {
		for k, v := range members {
			one, _ := json.Marshal(map[string]json.RawMessage{k: v})
			_ = json.Unmarshal(one, &p)
		}
	}
	str := func(s *string) []byte { return []byte(*s) }
	switch *m.Method {
	case "tools/call":
		return []Target{{Tool, str(p.Name)}}
	case "prompts/get":
		return []Target{{Prompt, str(p.Name)}}
	case "resources/read", "resources/subscribe":
		return []Target{{Resource, str(p.URI)}}
	case "completion/complete":
		if *p.Ref.Type == "ref/prompt" {
			return []Target{{Prompt, str(p.Ref.Name)}}
		}
		return []Target{{Resource, str(p.Ref.URI)}}
	case "subscriptions/listen":
		if p.Notifications == nil {
			return nil
		}
		var ts []Target
		for _, s := range p.Notifications.ResourceSubscriptions {
			ts = append(ts, Target{Resource, []byte(s)})
		}
		return ts
	}
	return nil
}

func sameTargets(a, b []Target) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || !bytes.Equal(a[i].Name, b[i].Name) {
			return false
		}
	}
	return true
}

// FuzzDecodeName checks Mcp-Name decoding: what it accepts is UTF-8, a
// plain value is the name itself and holds no control character but tab,
// and every name comes back from its base64 form.
func FuzzDecodeName(f *testing.F) {
	for _, s := range []string{"get_weather", "=?base64?Z2V0X3dlYXRoZXI=?=", "=?base64?w6k=?=", "=?BASE64?eA==?=",
		"=?base64?!!?=", "a\r\nb", "\xff", "=?base64?", "=?base64??=", "caf\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		name, err := DecodeName(v)
		if err == nil {
			if !utf8.ValidString(name) {
				t.Fatalf("%q decodes to %q, not UTF-8", v, name)
			}
			if !strings.HasPrefix(v, sentinelPrefix) || !strings.HasSuffix(v[len(sentinelPrefix):], sentinelSuffix) {
				if name != v || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
					t.Fatalf("plain %q decodes to %q", v, name)
				}
			}
		}
		if !utf8.ValidString(v) {
			return
		}
		enc := sentinelPrefix + base64.StdEncoding.EncodeToString([]byte(v)) + sentinelSuffix
		if got, err := DecodeName(enc); err != nil || got != v {
			t.Fatalf("%q (%q) decodes to %q, %v", enc, v, got, err)
		}
	})
}

// FuzzMatch checks rule patterns against regular expressions that say the
// same, and that a name quoted whole matches itself only.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"delete_*", "delete_item"}, {"file:///*/secret", "file:///a/b/secret"}, {"a?c", "abc"},
		{"a?c", "aéc"}, {`\*`, "*"}, {`\*`, "x"}, {"**a*", "bab"}, {"*", ""}, {"?", ""}, {"x*y*z", "xyzyz"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		// A name quoted whole matches itself and nothing else.
		var q strings.Builder
		for i := 0; i < len(pattern); i++ {
			q.WriteByte('\\')
			q.WriteByte(pattern[i])
		}
		if pattern != "" && (!match(q.String(), []byte(pattern)) || match(q.String(), []byte(name)) != (name == pattern)) {
			t.Fatalf("quoted %q: match(%q) = %v", pattern, name, match(q.String(), []byte(name)))
		}
		if !strings.ContainsAny(pattern, `*?\`) && match(pattern, []byte(name)) != (name == pattern) {
			t.Fatalf("plain %q: match(%q) = %v", pattern, name, match(pattern, []byte(name)))
		}
		if checkPattern(pattern) != nil || !utf8.ValidString(pattern) || !utf8.ValidString(name) {
			return
		}
		re := regexp.MustCompile(globRegexp(pattern))
		if got, want := match(pattern, []byte(name)), re.MatchString(name); got != want {
			t.Fatalf("match(%q, %q) = %v, the regular expression %s says %v", pattern, name, got, re, want)
		}
	})
}

// globRegexp translates a valid pattern into a regular expression.
func globRegexp(p string) string {
	var b strings.Builder
	b.WriteString(`\A(?s:`)
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRuneInString(p[i:])
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			i += size
			r, size = utf8.DecodeRuneInString(p[i:])
			b.WriteString(regexp.QuoteMeta(string(r)))
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
		i += size
	}
	b.WriteString(`)\z`)
	return b.String()
}
