package mcp

import (
	"encoding/json"
	"strings"
	"testing"
)

// testLister filters for a session of a "user": delete_* and the secret
// resources and the admin prompt are refused.
func testLister(t testing.TB) *lister {
	t.Helper()
	p, err := NewPolicy([]Rule{
		{Kind: Tool, Pattern: "delete_*", Requirement: Requirement{Roles: []string{"admin"}}},
		{Kind: Resource, Pattern: "file:///secret/*", Requirement: Requirement{Roles: []string{"admin"}}},
		{Kind: Prompt, Pattern: "admin_*", Requirement: Requirement{Roles: []string{"admin"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &lister{policy: p, who: &caller{}}
	l.who.set(sessionCaller("user"))
	return l
}

func TestListFilterJSON(t *testing.T) {
	t.Parallel()
	l := testLister(t)
	for _, tc := range []struct{ why, in, want string }{
		{"tools",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami","inputSchema":{"type":"object"}},{"name":"delete_item"},{"name":"search","description":"finds \"things\""}],"nextCursor":"x"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"whoami","inputSchema":{"type":"object"}},{"name":"search","description":"finds \"things\""}],"nextCursor":"x"}}`},
		{"every tool refused",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_a"},{"name":"delete_b"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`},
		{"names escaped",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"\u0064elete_x"},{"name":"ok"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}`},
		{"entries without a readable name go",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"x"},{"name":1},"str",{"name":"a","name":"b"},{"name":"ok"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}`},
		{"resources by uri, templates by uriTemplate, prompts by name, pretty-printed",
			"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": \"r\",\n  \"result\": {\n    \"resources\": [\n      {\"uri\": \"file:///secret/a\"},\n      {\"uri\": \"file:///public/b\"}\n    ],\n    \"resourceTemplates\": [{\"uriTemplate\": \"file:///secret/{x}\"}, {\"uriTemplate\": \"file:///{x}\"}],\n    \"prompts\": [{\"name\": \"admin_p\"}, {\"name\": \"review\"}]\n  }\n}",
			"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": \"r\",\n  \"result\": {\n    \"resources\": [{\"uri\": \"file:///public/b\"}],\n    \"resourceTemplates\": [{\"uriTemplate\": \"file:///{x}\"}],\n    \"prompts\": [{\"name\": \"review\"}]\n  }\n}"},
		{"a list that varies per caller is not for shared caches (cacheScope after)",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}],"ttlMs":60000,"cacheScope":"public"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}],"ttlMs":60000,"cacheScope":"private"}}`},
		{"cacheScope before the list, which changes too",
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"public","tools":[{"name":"delete_x"},{"name":"ok"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"ok"}]}}`},
		{"a batch of answers",
			`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_x"}]}},{"jsonrpc":"2.0","id":2,"result":{"content":[]}},{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"admin_y"},{"name":"p"}]}}]`,
			`[{"jsonrpc":"2.0","id":1,"result":{"tools":[]}},{"jsonrpc":"2.0","id":2,"result":{"content":[]}},{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"p"}]}}]`},
		{"two tools members: both filtered",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_x"}],"tools":[{"name":"delete_y"},{"name":"ok"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"ok"}]}}`},
	} {
		got, changed, err := l.filter(nil, []byte(tc.in))
		if string(got) != tc.want || !changed || err != nil {
			t.Errorf("%s:\n got %s (%v)\nwant %s", tc.why, got, changed, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: not JSON", tc.why)
		}
	}
	// Left byte for byte: answers without a list, lists with nothing
	// refused, things that are not answers, not JSON at all.
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"tools\":[{\"name\":\"delete_x\"}]}"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}, {"name":"fine"}]}}`,
		`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`,
		`{"jsonrpc":"2.0","id":1,"result":{"capabilities":{"tools":{"listChanged":true}}}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"tools":[{"name":"delete_x"}]}}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}`,
		``, `[1,2]`, `"text"`,
		// What clients take though it is not quite right: lone surrogates
		// and invalid UTF-8 outside the names.
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"ok\",\"description\":\"\\ud800 \xff\"}]}}",
	} {
		if got, changed, err := l.filter(nil, []byte(in)); string(got) != in || changed || err != nil {
			t.Errorf("changed %s into %s (%v)", in, got, err)
		}
	}
	// A lone surrogate in a name is U+FFFD; invalid UTF-8 there makes the
	// entry unreadable: it goes.
	got, _, err := l.filter(nil, []byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"delete_\\udc00\"},{\"name\":\"x\xff\"},{\"name\":\"ok\"}]}}"))
	if err != nil || string(got) != `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}` {
		t.Errorf("odd names: %s %v", got, err)
	}
	// What the reader cannot read at all is an error, for the caller to
	// refuse: a client might find a list in it.
	for _, in := range []string{`not json`, `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_x"}]}} trailing`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + `]}}`} {
		if _, _, err := l.filter(nil, []byte(in)); err == nil {
			t.Errorf("read %.60s", in)
		}
	}
}

// A list filter that judges no resources leaves resource lists alone.
func TestListFilterOnlyJudgedKinds(t *testing.T) {
	t.Parallel()
	p, _ := NewPolicy([]Rule{{Kind: Tool, Pattern: "x", Requirement: Requirement{Deny: true}}}, nil)
	l := &lister{policy: p, who: &caller{}}
	in := `{"jsonrpc":"2.0","id":1,"result":{"resources":[{"name":"x"},{"uri":1}],"cacheScope":"public"}}`
	if got, changed, err := l.filter(nil, []byte(in)); string(got) != in || changed || err != nil {
		t.Fatalf("changed into %s (%v)", got, err)
	}
}

const stream = "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
	": a comment\n\n" +
	"id: 2\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\r\ndata: \"result\":{\"tools\":[{\"name\":\"delete_item\"},{\"name\":\"whoami\"}]}}\r\nretry: 100\r\n\r\n" +
	"data:{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"tools\":[{\"name\":\"ok\"}]}}\r\r" +
	"data\n\n"

const filtered = "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
	": a comment\n\n" +
	"id: 2\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\ndata: \"result\":{\"tools\":[{\"name\":\"whoami\"}]}}\nretry: 100\r\n\r\n" +
	"data:{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"tools\":[{\"name\":\"ok\"}]}}\r\r" +
	"data\n\n"

// Events are filtered one by one, whatever the line endings, the data
// split over lines, and the fields around it; others pass byte for byte.
func TestListFilterSSE(t *testing.T) {
	t.Parallel()
	s := sse{lister: testLister(t)}
	var out []byte
	for rest := []byte(stream); len(rest) > 0; {
		n := nextEvent(rest)
		if n < 0 {
			t.Fatalf("incomplete event %q", rest)
		}
		out = s.event(out, rest[:n])
		rest = rest[n:]
	}
	if string(out) != filtered {
		t.Fatalf("got\n%q\nwant\n%q", out, filtered)
	}
}

func TestNextEvent(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{
		"":                -1,
		"data: x":         -1,
		"data: x\n":       -1,
		"data: x\n\n":     9,
		"data: x\r\n\r\n": 11,
		"data: x\r\r":     -1, // the second CR may start a CRLF
		"data: x\r\rz":    9,
		"data: x\r":       -1,
		"\n":              1,
		"a\nb\n\nc\n\n":   5,
	} {
		if got := nextEvent([]byte(in)); got != want {
			t.Errorf("nextEvent(%q) = %d, want %d", in, got, want)
		}
	}
}

// An event whose data the gateway cannot read is dropped (a client might
// read a list in it); one without data passes.
func TestListFilterSSEDropsUnreadableEvents(t *testing.T) {
	t.Parallel()
	s := sse{lister: testLister(t)}
	for in, want := range map[string]string{
		"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"delete_x\"}]}} x\n\n": "",
		"data: not json\n\n": "",
		"id: 4\ndata:\n\n":   "id: 4\ndata:\n\n",
		": keep-alive\n\n":   ": keep-alive\n\n",
		// Clients read messages only from events of type message (or
		// none): the HTTP+SSE transport's endpoint event passes.
		"event: endpoint\ndata: /message?sessionId=x\n\n":     "event: endpoint\ndata: /message?sessionId=x\n\n",
		"event: message\ndata: not json\n\n":                  "",
		"event: endpoint\nevent: message\ndata: not json\n\n": "",
		"event:\ndata: not json\n\n":                          "",
	} {
		if got := s.event(nil, []byte(in)); string(got) != want {
			t.Errorf("%q became %q", in, got)
		}
	}
}
