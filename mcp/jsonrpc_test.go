package mcp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// targets renders a body's messages as "method: kind name, ..." lines.
func render(b *Body) string {
	var lines []string
	for i, m := range b.Messages {
		line := string(m.Method)
		if m.Method == nil {
			line = "(response)"
		}
		line += " id=" + string(m.ID) + ":"
		for _, t := range b.TargetsOf(i) {
			line += fmt.Sprintf(" %s %q", t.Kind, t.Name)
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func TestParseReadsWhatEachMethodUses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_item","arguments":{"id":7}}}`,
			`tools/call id=1: tool "delete_item"`},
		// Members in any order; params before the method.
		{`{"params":{"arguments":{"name":"decoy"},"name":"whoami"},"method":"tools/call","id":"a","jsonrpc":"2.0"}`,
			`tools/call id="a": tool "whoami"`},
		{`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}`,
			`resources/read id=2: resource "file:///etc/hosts"`},
		{`{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"file:///x"}}`,
			`resources/subscribe id=3: resource "file:///x"`},
		{`{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"review","arguments":{}}}`,
			`prompts/get id=4: prompt "review"`},
		{`{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"review"},"argument":{"name":"a","value":"b"}}}`,
			`completion/complete id=5: prompt "review"`},
		{`{"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{x}"}}}`,
			`completion/complete id=6: resource "file:///{x}"`},
		{`{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["file:///a","file:///b"]}}}`,
			`subscriptions/listen id=7: resource "file:///a" resource "file:///b"`},
		// Resources named elsewhere than in a listen are no targets.
		{`{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{"notifications":{"resourceSubscriptions":["file:///a"]}}}`,
			`tools/list id=8:`},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, `notifications/initialized id=:`},
		{`{"jsonrpc":"2.0","id":9,"result":{"content":[]}}`, `(response) id=9:`},
		{`{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"no"}}`, `(response) id=null:`},
		// Escapes are decoded before anything is judged.
		{`{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"\u0064elete_\u00e9t\u00E9 \ud83d\ude00"}}`,
			`tools/call id=1: tool "delete_été 😀"`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\"b\\c\n"}}`, `tools/call id=1: tool "a\"b\\c\n"`},
		// White space everywhere JSON allows it, and a byte order mark.
		{"\xef\xbb\xbf \r\n\t{ \"jsonrpc\" : \"2.0\" , \"id\" : 1 , \"method\" : \"tools/call\" , \"params\" : { \"name\" : \"x\" } } \n",
			`tools/call id=1: tool "x"`},
		// Numbers in JSON's grammar, however large.
		{`{"jsonrpc":"2.0","id":-12.5e+300,"method":"ping","params":{"n":123456789012345678901234567890}}`, `ping id=-12.5e+300:`},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"p"}}]`,
			"tools/call id=1: tool \"a\"\nnotifications/x id=:\nprompts/get id=2: prompt \"p\""},
	} {
		var b Body
		if err := Parse([]byte(tc.body), &b); err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if got := render(&b); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.body, got, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	var b Body
	if err := Parse([]byte(`[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}},{"jsonrpc":"2.0","id":2,"method":"prompts/list"}]`), &b); err != nil {
		t.Fatal(err)
	}
	if !b.Batch || !b.Lists || !b.Initialize {
		t.Fatalf("batch %v lists %v initialize %v", b.Batch, b.Lists, b.Initialize)
	}
	if err := Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`), &b); err != nil {
		t.Fatal(err)
	}
	if b.Batch || b.Lists || b.Initialize {
		t.Fatal("flags kept from the previous body")
	}
}

// Bodies a parser could read another way than the gateway are refused, not
// judged one way and executed another.
func TestParseRefusesWhatParsersReadDifferently(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 1001) + strings.Repeat("]", 1001)
	for _, tc := range []struct {
		why, body string
		code      int
	}{
		{"empty", ``, CodeInvalidRequest},
		{"white space only", " \n", CodeInvalidRequest},
		{"not JSON", `hello`, CodeParseError},
		{"a number", `42`, CodeInvalidRequest},
		{"a string", `"tools/call"`, CodeInvalidRequest},
		{"an empty object", `{}`, CodeInvalidRequest},
		{"an empty batch", `[]`, CodeInvalidRequest},
		{"a batch of non-objects", `[1,2]`, CodeInvalidRequest},
		{"no jsonrpc", `{"id":1,"method":"tools/call","params":{"name":"x"}}`, CodeInvalidRequest},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, CodeInvalidRequest},
		{"method twice (first or last wins?)", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}`, CodeInvalidRequest},
		{"params twice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"params":{"name":"y"}}`, CodeInvalidRequest},
		{"name twice", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}`, CodeInvalidParams},
		{"Method in another case (Go's encoding/json reads it)", `{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"x"}}`, CodeInvalidRequest},
		{"METHOD alone", `{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"x"}}`, CodeInvalidRequest},
		{"params spelled with U+017F (folds to s)", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"paramſ":{"name":"y"}}`, CodeInvalidRequest},
		{"Name in another case", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","Name":"y"}}`, CodeInvalidParams},
		{"an escaped duplicate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"\u006dethod":"tools/list"}`, CodeInvalidRequest},
		{"name not a string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["x"]}}`, CodeInvalidParams},
		{"name missing", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, CodeInvalidParams},
		{"params an array", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["x"]}`, CodeInvalidParams},
		{"no params", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, CodeInvalidParams},
		{"uri not a string", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":1}}`, CodeInvalidParams},
		{"an unknown ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}`, CodeInvalidParams},
		{"subscriptions not strings", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":[1]}}}`, CodeInvalidParams},
		{"method not a string", `{"jsonrpc":"2.0","id":1,"method":7}`, CodeInvalidRequest},
		{"an object id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, CodeInvalidRequest},
		{"a request and a response", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, CodeInvalidRequest},
		{"neither", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest},
		{"a second value after the first", `{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}`, CodeParseError},
		{"trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"ping"} x`, CodeParseError},
		{"a trailing comma", `{"jsonrpc":"2.0","id":1,"method":"ping",}`, CodeParseError},
		{"a comment", `{"jsonrpc":"2.0","id":1,/* x */"method":"ping"}`, CodeParseError},
		{"NaN", `{"jsonrpc":"2.0","id":NaN,"method":"ping"}`, CodeInvalidRequest},
		{"Infinity in params", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":Infinity}}`, CodeParseError},
		{"a leading zero", `{"jsonrpc":"2.0","id":01,"method":"ping"}`, CodeParseError},
		{"hexadecimal", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":0x10}}`, CodeParseError},
		{"single quotes", `{'jsonrpc':'2.0'}`, CodeParseError},
		{"invalid UTF-8 (replaced by U+FFFD, or not, by parsers)", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"delete\xff\"}}", CodeParseError},
		{"UTF-8 of a surrogate", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xed\xa0\x80\"}}", CodeParseError},
		{"a lone high surrogate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\ud800"}}`, CodeParseError},
		{"a lone low surrogate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\udc00b"}}`, CodeParseError},
		{"a high surrogate then a letter", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800\u0041"}}`, CodeParseError},
		{"a raw control character", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\tb\"}}", CodeParseError},
		{"a bad escape", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\x41"}}`, CodeParseError},
		{"an unterminated string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"abc`, CodeParseError},
		{"truncated", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"abc"}`, CodeParseError},
		{"too deep", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":` + deep + `}}`, CodeParseError},
		{"two byte order marks", "\xef\xbb\xbf\xef\xbb\xbf{}", CodeParseError},
	} {
		var b Body
		err := Parse([]byte(tc.body), &b)
		var e *Error
		if err == nil {
			t.Errorf("%s: accepted: %s", tc.why, render(&b))
			continue
		}
		e = err.(*Error)
		if e.Code != tc.code || e.Status != 400 {
			t.Errorf("%s: %d %d %s, want code %d", tc.why, e.Status, e.Code, e.Message, tc.code)
		}
	}
}

// Whatever Go's strict decoder accepts as one JSON value, the reader
// accepts too (its grammar is JSON's), and the other way round; the
// reader's refusals beyond the grammar are its own rules.
func TestParseAgreesWithEncodingJSONOnSyntax(t *testing.T) {
	t.Parallel()
	seeds := []string{
		`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":[1,2.5,-0,1e9,true,false,null,"x",{"b":{}}]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":"\u00e9\n\"\\\/"}}`,
	}
	for _, s := range seeds {
		for cut := 0; cut <= len(s); cut++ {
			in := s[:cut]
			var b Body
			err := Parse([]byte(in), &b)
			valid := json.Valid([]byte(in))
			if valid && err != nil && err.(*Error).Code == CodeParseError {
				t.Errorf("%q: valid JSON, parse error %v", in, err)
			}
			if !valid && err == nil {
				t.Errorf("%q: invalid JSON accepted", in)
			}
		}
	}
}

func TestParseReusesItsStorage(t *testing.T) {
	var b Body
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"weather in Paris","limit":10}}}`)
	if err := Parse(body, &b); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() {
		if err := Parse(body, &b); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("%v allocations per parse", a)
	}
	if !bytes.Equal(b.Targets[0].Name, []byte("search")) {
		t.Fatal(render(&b))
	}
}
