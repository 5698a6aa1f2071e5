package mcp

import (
	"strings"
	"testing"
)

func TestDecodeName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"get_weather", "get_weather"},
		{"file:///projects/myapp/config.json", "file:///projects/myapp/config.json"},
		// The specification's examples.
		{"=?base64?SGVsbG8sIOS4lueVjA==?=", "Hello, 世界"},
		{"=?base64?IHBhZGRlZCA=?=", " padded "},
		{"=?base64?bGluZTEKbGluZTI=?=", "line1\nline2"},
		{"=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?="},
		// UTF-8 as it is (the Go SDK sends it so), and tabs.
		{"Zoë", "Zoë"},
		{"a\tb", "a\tb"},
		// The sentinel is case-sensitive: anything else is the value.
		{"=?BASE64?SGk=?=", "=?BASE64?SGk=?="},
		{"=?base64?SGk=", "=?base64?SGk="},
	} {
		got, err := DecodeName(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"=?base64?not base64!?=", "=?base64?/w==?=" /* 0xff: not UTF-8 */, "a\x00b", "a\rb", "a\x7fb", "\xff"} {
		if got, err := DecodeName(bad); err == nil {
			t.Errorf("%q: decoded as %q", bad, got)
		}
	}
}

func TestRequiresHeaders(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{
		"2026-07-28": true, "2027-01-01": true, "2025-11-25": false, "2025-06-18": false, "2025-03-26": false,
		"": false, "draft": false, "2026-07-28 ": false, "9999-99-99x": false, "2026/07/28": false,
	} {
		if RequiresHeaders(v) != want {
			t.Errorf("%q: %v", v, !want)
		}
	}
}

// The headers say what the body says; a version that requires them has
// them; anything else is a 400 with MCP's HeaderMismatch.
func TestHeadersAgainstTheBody(t *testing.T) {
	t.Parallel()
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo"}}`
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	note := `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	batch := `[` + call + `,` + list + `]`
	response := `{"jsonrpc":"2.0","id":1,"result":{}}`
	const v = "2026-07-28"
	for _, tc := range []struct {
		why, body string
		h         map[string][]string
		want      *Error
	}{
		{"modern and matching", call, hdr(v, "tools/call", "=?base64?aMOpbGxv?="), nil},
		{"raw UTF-8 name", call, hdr(v, "tools/call", "héllo"), nil},
		{"a list needs no name", list, hdr(v, "tools/list", ""), nil},
		{"legacy without headers", call, hdr("2025-11-25", "", ""), nil},
		{"no version at all", call, hdr("", "", ""), nil},
		{"a notification may go without", note, hdr(v, "", ""), nil},
		{"a legacy batch", batch, hdr("2025-03-26", "", ""), nil},
		{"a response", response, hdr("2025-11-25", "", ""), nil},
		{"method missing", call, hdr(v, "", "héllo"), errMethodMissing},
		{"name missing", call, hdr(v, "tools/call", ""), errNameMissing},
		{"another method", call, hdr(v, "tools/list", "héllo"), errMethodMismatch},
		{"another name", call, hdr(v, "tools/call", "hello"), errNameMismatch},
		{"another name, encoded", call, hdr(v, "tools/call", "=?base64?aGVsbG8=?="), errNameMismatch},
		{"the method's case", call, hdr(v, "Tools/Call", "héllo"), errMethodMismatch},
		{"an undecodable name", call, hdr(v, "tools/call", "=?base64?***?="), errNameEncoding},
		// Headers present with an older version are checked all the same.
		{"legacy with a lying name", call, hdr("2025-06-18", "tools/call", "whoami"), errNameMismatch},
		{"a batch cannot have one method", batch, hdr("2025-03-26", "tools/call", ""), errBatchHeaders},
		{"a response with a method", response, hdr(v, "tools/call", ""), errResponseHeaders},
		{"two names", call, map[string][]string{HeaderProtocolVersion: {v}, HeaderMethod: {"tools/call"}, HeaderName: {"héllo", "x"}}, errHeaderRepeated},
	} {
		var b Body
		if err := Parse([]byte(tc.body), &b); err != nil {
			t.Fatal(err)
		}
		var rh requestHeaders
		rh.read(tc.h)
		if got := rh.check(&b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.why, got, tc.want)
		}
	}
}

func hdr(version, method, name string) map[string][]string {
	h := map[string][]string{}
	for k, v := range map[string]string{HeaderProtocolVersion: version, HeaderMethod: method, HeaderName: name} {
		if v != "" {
			h[k] = []string{v}
		}
	}
	return h
}

func TestHeaderErrorsAreHeaderMismatch(t *testing.T) {
	t.Parallel()
	for _, e := range []*Error{errHeaderRepeated, errNameEncoding, errMethodMissing, errNameMissing, errMethodMismatch, errNameMismatch} {
		if e.Code != CodeHeaderMismatch || e.Status != 400 || !strings.HasPrefix(e.Message, "Header mismatch") {
			t.Errorf("%+v", e)
		}
	}
}
