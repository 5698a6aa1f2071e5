package mcp

import (
	"bytes"
	"unicode/utf8"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// MaxFilteredMessage bounds one message the list filter holds: a JSON
// answer, or one server-sent event, of a response being filtered. A
// larger one is not passed on unfiltered: a JSON answer becomes a 502, an
// event stream ends.
const MaxFilteredMessage = 16 << 20

// lister removes from list answers the entries a caller may not use: the
// tools of a tools/list result, the prompts of prompts/list, the resources
// of resources/list and the templates of resources/templates/list. Which
// answer a message is does not depend on its id: every JSON-RPC response
// whose result holds such a list is filtered (a server may change an id's
// spelling, 1.0 for 1, and a resumed stream replays answers whose request
// the gateway never saw). Everything else is left byte for byte.
type lister struct {
	policy *Policy
	who    *caller
	scan   Body   // scratch for decoded strings
	edits  []edit // of the message being filtered, in order
	text   []byte // replacement text the edits point into
	spans  []span // kept elements of one list
}

// edit replaces src[from:to] with text[at:at+n].
type edit struct{ from, to, at, n int }

type span struct{ from, to int }

// filter appends src to dst, every message filtered, and reports whether
// anything changed. src is one message or a batch of them; an empty src
// (an event without data) is appended unchanged. Anything the reader
// cannot read is an error: a client might read a list in it.
func (l *lister) filter(dst, src []byte) ([]byte, bool, *Error) {
	l.edits, l.text = l.edits[:0], l.text[:0]
	l.scan.reset()
	r := reader{b: src, body: &l.scan, lenient: true}
	r.space()
	var err *Error
	switch r.peek() {
	case 0:
		return append(dst, src...), false, nil
	case '{':
		err = l.message(&r)
	case '[':
		err = l.batch(&r)
	default:
		err = r.skip(1)
	}
	if r.space(); err == nil && r.i != len(src) {
		err = errTrailing
	}
	if err != nil || len(l.edits) == 0 {
		return append(dst, src...), false, err
	}
	at := 0
	for _, e := range l.edits {
		dst = append(dst, src[at:e.from]...)
		dst = append(dst, l.text[e.at:e.at+e.n]...)
		at = e.to
	}
	return append(dst, src[at:]...), true, nil
}

func (l *lister) batch(r *reader) *Error {
	r.i++
	for {
		r.space()
		switch r.peek() {
		case ']':
			r.i++
			return nil
		case '{':
			if err := l.message(r); err != nil {
				return err
			}
		default:
			if err := r.skip(1); err != nil {
				return err
			}
		}
		r.space()
		if r.peek() == ',' {
			r.i++
		}
	}
}

// message filters one message, at '{'.
func (l *lister) message(r *reader) *Error {
	return l.members(r, 1, func(key []byte, depth int) *Error {
		if string(key) == "result" && r.peek() == '{' {
			return l.result(r, depth)
		}
		return r.skip(depth)
	})
}

// result filters a result object's lists, at '{', and makes a public
// cacheScope private (2026-07-28: a list that varies per caller must not
// be served from a shared cache to another).
func (l *lister) result(r *reader, depth int) *Error {
	filtered := false
	public := -1 // where a "public" cacheScope starts
	err := l.members(r, depth, func(key []byte, depth int) *Error {
		var k Kind
		var nameKey string
		switch string(key) {
		case "tools":
			k, nameKey = Tool, "name"
		case "prompts":
			k, nameKey = Prompt, "name"
		case "resources":
			k, nameKey = Resource, "uri"
		case "resourceTemplates":
			k, nameKey = Resource, "uriTemplate"
		case "cacheScope":
			start := r.i
			if err := r.skip(depth); err != nil {
				return err
			}
			if string(r.b[start:r.i]) == `"public"` {
				public = start
			}
			return nil
		}
		if k == 0 || r.peek() != '[' || !l.policy.Judges(k) {
			return r.skip(depth)
		}
		filtered = true
		return l.list(r, k, nameKey, depth)
	})
	if err == nil && filtered && public >= 0 {
		l.replace(public, public+len(`"public"`), []byte(`"private"`))
	}
	return err
}

// list filters the entries of one list, at '['.
func (l *lister) list(r *reader, k Kind, nameKey string, depth int) *Error {
	from := r.i
	r.i++
	l.spans = l.spans[:0]
	dropped := false
	for {
		r.space()
		if r.peek() == ']' {
			r.i++
			break
		}
		start := r.i
		name, ok, err := l.entryName(r, nameKey, depth+1)
		if err != nil {
			return err
		}
		keep := false
		if ok { // an entry without a name the gateway can read goes
			why, _ := l.policy.judge(l.who, k, name)
			keep = why == betterauth.Allowed
		}
		if keep {
			l.spans = append(l.spans, span{start, r.i})
		} else {
			dropped = true
		}
		r.space()
		c := r.next()
		if c == ']' {
			break
		}
		if c != ',' {
			return errSyntax
		}
	}
	if !dropped {
		return nil
	}
	at := len(l.text)
	l.text = append(l.text, '[')
	for i, s := range l.spans {
		if i > 0 {
			l.text = append(l.text, ',')
		}
		l.text = append(l.text, r.b[s.from:s.to]...)
	}
	l.text = append(l.text, ']')
	l.edits = append(l.edits, edit{from, r.i, at, len(l.text) - at})
	return nil
}

// replace records that src[from:to] becomes text.
func (l *lister) replace(from, to int, text []byte) {
	at := len(l.text)
	l.text = append(l.text, text...)
	e := edit{from, to, at, len(text)}
	// Edits are applied in order; a cacheScope may come after or before
	// the lists of its result.
	i := len(l.edits)
	for i > 0 && l.edits[i-1].from > from {
		i--
	}
	l.edits = append(l.edits, edit{})
	copy(l.edits[i+1:], l.edits[i:])
	l.edits[i] = e
}

// entryName reads one list entry, and returns its name: the string member
// nameKey of an object, given once.
func (l *lister) entryName(r *reader, nameKey string, depth int) (name []byte, ok bool, err *Error) {
	if r.peek() != '{' {
		return nil, false, r.skip(depth)
	}
	n := 0
	err = l.members(r, depth, func(key []byte, depth int) *Error {
		if string(key) != nameKey {
			return r.skip(depth)
		}
		n++
		if r.peek() != '"' {
			return r.skip(depth)
		}
		var err *Error
		name, err = r.string()
		return err
	})
	return name, n == 1 && name != nil && utf8.Valid(name), err
}

// members reads an object at '{', calling read for each member with the
// reader at its value.
func (l *lister) members(r *reader, depth int, read func(key []byte, depth int) *Error) *Error {
	if depth > maxDepth {
		return errTooDeep
	}
	r.i++
	r.space()
	if r.peek() == '}' {
		r.i++
		return nil
	}
	for {
		r.space()
		key, err := r.key()
		if err != nil {
			return err
		}
		if err := read(key, depth+1); err != nil {
			return err
		}
		r.space()
		switch r.next() {
		case ',':
		case '}':
			return nil
		default:
			return errSyntax
		}
	}
}

// sse filters a stream of server-sent events, event by event.
type sse struct {
	lister *lister
	data   []byte // the event's data, joined
	out    []byte
}

// nextEvent returns the length of the first complete event of b (up to
// and including the empty line that ends it), or -1 when b holds none yet.
func nextEvent(b []byte) int {
	var line, at int
	return scanEvent(b, &line, &at)
}

// scanEvent is nextEvent resuming a scan: *at is where scanning goes on
// and *line where the current line starts (both 0 for a fresh b). When b
// holds no complete event it returns -1 with both set for the next call,
// once more bytes are appended to b: no byte is scanned twice, however an
// event arrives. Lines end with CRLF, LF or CR; a CR at the end of b may be
// the first half of a CRLF, so it waits for the next byte.
func scanEvent(b []byte, line, at *int) int {
	lineStart := *line
	for i := *at; i < len(b); i++ {
		c := b[i]
		if c != '\n' && c != '\r' {
			continue
		}
		end := i + 1
		if c == '\r' {
			if end == len(b) {
				*line, *at = lineStart, i
				return -1
			}
			if b[end] == '\n' {
				end++
			}
		}
		if i == lineStart {
			return end // an empty line
		}
		lineStart, i = end, end-1
	}
	*line, *at = lineStart, len(b)
	return -1
}

// event filters one event (as nextEvent delimits it), appending it to dst:
// its data lines, when they hold a list answer, become the filtered
// message; everything else (ids, event names, comments, other data) is
// kept as it was.
func (s *sse) event(dst, ev []byte) []byte {
	s.data = s.data[:0]
	lines, firstData := 0, -1
	message := true // an event without a type is a message
	for rest := ev; len(rest) > 0; {
		line, next := cutLine(rest)
		if v, ok := fieldValue(line, "event"); ok {
			// The last event field wins, as in EventSource.
			message = len(v) == 0 || string(v) == "message"
		}
		if v, ok := dataValue(line); ok {
			if firstData < 0 {
				firstData = len(ev) - len(rest)
			} else {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, v...)
			lines++
		}
		rest = next
	}
	if lines == 0 || !message {
		// Clients read JSON-RPC only from message events: another type
		// (the HTTP+SSE transport's endpoint event) holds no list.
		return append(dst, ev...)
	}
	var changed bool
	var err *Error
	s.out, changed, err = s.lister.filter(s.out[:0], s.data)
	if err != nil {
		// Not JSON the gateway can read: no client reads it as a message
		// either, or one might find a list in it. Dropped.
		return dst
	}
	if !changed {
		return append(dst, ev...)
	}
	dst = append(dst, ev[:firstData]...)
	// JSON holds a line break only as white space: each line of the
	// filtered message is a data line of its own.
	for msg := s.out; ; {
		line, rest, more := bytes.Cut(msg, []byte("\n"))
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\n')
		if !more {
			break
		}
		msg = rest
	}
	for rest := ev[firstData:]; len(rest) > 0; {
		line, next := cutLine(rest)
		if _, ok := dataValue(line); !ok {
			dst = append(dst, rest[:len(rest)-len(next)]...)
		}
		rest = next
	}
	return dst
}

// cutLine splits off the first line of b, terminator included.
func cutLine(b []byte) (line, rest []byte) {
	for i, c := range b {
		switch c {
		case '\n':
			return b[:i+1], b[i+1:]
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return b[:i+2], b[i+2:]
			}
			return b[:i+1], b[i+1:]
		}
	}
	return b, nil
}

// dataValue returns the value of a "data" field line (terminator
// included), without the one space after the colon.
func dataValue(line []byte) ([]byte, bool) { return fieldValue(line, "data") }

// fieldValue returns the value of an event-stream line of the field name
// (the text after "name:" and one optional space), and whether it is one.
func fieldValue(line []byte, name string) ([]byte, bool) {
	line = bytes.TrimRight(line, "\r\n")
	v, ok := bytes.CutPrefix(line, []byte(name))
	if !ok {
		return nil, false
	}
	if len(v) == 0 {
		return v, true // "data" alone: an empty value
	}
	if v[0] != ':' {
		return nil, false // another field name, "dataset"
	}
	v = v[1:]
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return v, true
}
