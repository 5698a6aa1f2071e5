package mcp

import (
	"bytes"
	"net/http"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Kind is what a name designates: a tool, a resource (by URI) or a prompt.
type Kind uint8

// Kinds.
const (
	Tool Kind = iota + 1
	Resource
	Prompt
)

func (k Kind) String() string {
	switch k {
	case Tool:
		return "tool"
	case Resource:
		return "resource"
	case Prompt:
		return "prompt"
	}
	return ""
}

// Target is one thing a message asks to use.
type Target struct {
	Kind Kind
	Name []byte // decoded
}

// Message is one JSON-RPC message of a request body, as far as the gateway
// reads it.
type Message struct {
	// Method is the request's or notification's method; nil for a
	// response (a client answering its server, 2025-03-26 to 2025-11-25).
	Method []byte
	// ID is the id member as written (a string, a number or null); nil
	// when absent, as in a notification.
	ID []byte

	first, end int // its targets: Body.Targets[first:end]
}

// Body is a POST body read as JSON-RPC: one message, or a batch
// (2025-03-26).
type Body struct {
	Messages []Message
	// Targets are what the messages ask to use: tools/call's tool,
	// resources/read's and resources/subscribe's resource, prompts/get's
	// prompt, completion/complete's reference, subscriptions/listen's
	// resources.
	Targets []Target
	Batch   bool
	// Lists says a message asks for tools/list, resources/list,
	// resources/templates/list or prompts/list; Initialize, for
	// initialize.
	Lists, Initialize bool

	scratch []byte // strings that had escapes, decoded
}

// TargetsOf returns the targets of the message at index i.
func (b *Body) TargetsOf(i int) []Target {
	m := &b.Messages[i]
	return b.Targets[m.first:m.end]
}

func (b *Body) reset() {
	clear(b.Messages) // what they point into is the last request's
	clear(b.Targets)
	b.Messages, b.Targets, b.scratch = b.Messages[:0], b.Targets[:0], b.scratch[:0]
	b.Batch, b.Lists, b.Initialize = false, false, false
}

// Error is why a request is not one the gateway can judge: the HTTP
// status, and the JSON-RPC error that says so.
type Error struct {
	Status  int
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// JSON-RPC 2.0 and MCP error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeHeaderMismatch is MCP's (2026-07-28): the Mcp-Method or
	// Mcp-Name header is missing, malformed or says something else than
	// the body.
	CodeHeaderMismatch = -32020
	// CodeRefused is what the gateway's own refusals (401, 403, 404, 429,
	// 503) carry, as Better-Auth's withMcpAuth answers its 401; the HTTP
	// status, WWW-Authenticate and error.data.code say why.
	CodeRefused = -32000
)

func badRequest(code int, msg string) *Error { return &Error{http.StatusBadRequest, code, msg} }

var (
	errEmpty         = badRequest(CodeInvalidRequest, "Invalid request: the body is empty")
	errSyntax        = badRequest(CodeParseError, "Parse error: the body is not JSON")
	errUTF8          = badRequest(CodeParseError, "Parse error: the body is not UTF-8")
	errSurrogate     = badRequest(CodeParseError, "Parse error: a string holds a lone UTF-16 surrogate")
	errTooDeep       = badRequest(CodeParseError, "Parse error: the body nests too deeply")
	errTrailing      = badRequest(CodeParseError, "Parse error: data after the JSON value")
	errNotMessage    = badRequest(CodeInvalidRequest, "Invalid request: not a JSON-RPC 2.0 message")
	errEmptyBatch    = badRequest(CodeInvalidRequest, "Invalid request: an empty batch")
	errVersion       = badRequest(CodeInvalidRequest, `Invalid request: "jsonrpc" must be "2.0"`)
	errMethodType    = badRequest(CodeInvalidRequest, `Invalid request: "method" must be a string`)
	errIDType        = badRequest(CodeInvalidRequest, `Invalid request: "id" must be a string, a number or null`)
	errParamsType    = badRequest(CodeInvalidRequest, `Invalid request: "params" must be an object or an array`)
	errDuplicate     = badRequest(CodeInvalidRequest, "Invalid request: a member is given twice")
	errAmbiguous     = badRequest(CodeInvalidRequest, "Invalid request: a member differs from a JSON-RPC member only in letter case")
	errParamsDup     = badRequest(CodeInvalidParams, "Invalid params: a member is given twice")
	errParamsFold    = badRequest(CodeInvalidParams, "Invalid params: a member differs from name, uri, ref or notifications only in letter case")
	errToolName      = badRequest(CodeInvalidParams, "Invalid params: tools/call needs params.name, a string")
	errPromptName    = badRequest(CodeInvalidParams, "Invalid params: prompts/get needs params.name, a string")
	errResourceURI   = badRequest(CodeInvalidParams, "Invalid params: this method needs params.uri, a string")
	errRef           = badRequest(CodeInvalidParams, `Invalid params: completion/complete needs params.ref of type "ref/prompt" with a name or "ref/resource" with a uri`)
	errSubscriptions = badRequest(CodeInvalidParams, "Invalid params: params.notifications.resourceSubscriptions must be an array of strings")
)

// maxDepth bounds nesting, as the Go SDK's reader does.
const maxDepth = 1000

var bom = []byte("\xef\xbb\xbf")

// Parse reads a POST body as JSON-RPC into body (whose storage it reuses),
// strictly: the gateway judges what it reads, so a body that parsers could
// read differently is refused rather than judged one way and executed
// another. It refuses invalid JSON (comments, NaN, trailing commas, data
// after the value), invalid UTF-8 and lone surrogates (which parsers
// replace differently), members given twice (which parsers take first or
// last), members that differ from a JSON-RPC member only in letter case
// ("Method", "paramſ": Go's encoding/json matches struct fields that way),
// and a method the gateway judges whose name is not a string. A leading
// UTF-8 byte order mark is skipped, as JavaScript's Request.json() does.
// Names are decoded; they point into b or into body's own storage.
func Parse(b []byte, body *Body) error {
	if err := parse(b, body); err != nil {
		return err
	}
	return nil
}

func parse(b []byte, body *Body) *Error {
	body.reset()
	r := reader{b: b, body: body}
	if bytes.HasPrefix(b, bom) {
		r.i = len(bom)
	}
	r.space()
	switch r.peek() {
	case 0:
		return errEmpty
	case '{':
		if err := r.message(); err != nil {
			return err
		}
	case '[':
		body.Batch = true
		r.i++
		r.space()
		if r.peek() == ']' {
			return errEmptyBatch
		}
		for {
			r.space()
			if r.peek() != '{' {
				return r.notMessage()
			}
			if err := r.message(); err != nil {
				return err
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
	default:
		return r.notMessage()
	}
	r.space()
	if r.i != len(b) {
		return errTrailing
	}
	return nil
}

// reader scans one body.
type reader struct {
	b    []byte
	i    int
	body *Body
	// lenient takes invalid UTF-8 and lone surrogates, for reading the
	// upstream's answers as clients do (JavaScript keeps lone surrogates,
	// decoders replace invalid bytes): only requests must be unambiguous.
	lenient bool
}

func (r *reader) peek() byte {
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

func (r *reader) next() byte {
	c := r.peek()
	r.i++
	return c
}

func (r *reader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// notMessage is the error for a value where a message belongs: a parse
// error if it is not even JSON.
func (r *reader) notMessage() *Error {
	if err := r.skip(1); err != nil {
		return err
	}
	return errNotMessage
}

// The members of a message the gateway reads, by bit.
const (
	mJSONRPC uint8 = 1 << iota
	mMethod
	mID
	mParams
	mResult
	mError
)

var messageMembers = []string{"jsonrpc", "method", "id", "params", "result", "error"}

// message reads one message object, at '{'.
func (r *reader) message() *Error {
	r.i++
	b := r.body
	m := Message{first: len(b.Targets)}
	var p params
	var seen uint8
	r.space()
	if r.peek() == '}' {
		r.i++
		return errNotMessage
	}
	for {
		r.space()
		key, err := r.key()
		if err != nil {
			return err
		}
		bit, err := member(key, messageMembers, errAmbiguous)
		if err != nil {
			return err
		}
		if seen&bit != 0 {
			return errDuplicate
		}
		seen |= bit
		switch bit {
		case mJSONRPC:
			v, err := r.stringValue(errVersion)
			if err != nil {
				return err
			}
			if string(v) != "2.0" {
				return errVersion
			}
		case mMethod:
			if m.Method, err = r.stringValue(errMethodType); err != nil {
				return err
			}
		case mID:
			start := r.i
			switch c := r.peek(); {
			case c == '"' || c == 'n' || c == '-' || '0' <= c && c <= '9':
				err = r.skip(2)
			default:
				err = errIDType
			}
			m.ID = r.b[start:r.i]
		case mParams:
			switch r.peek() {
			case '{':
				err = r.params(&p)
			case '[':
				err = r.skip(2)
			default:
				err = errParamsType
			}
		default: // result, error and members the gateway does not read
			err = r.skip(2)
		}
		if err != nil {
			return err
		}
		r.space()
		switch r.next() {
		case ',':
			continue
		case '}':
		default:
			return errSyntax
		}
		break
	}
	if seen&mJSONRPC == 0 {
		return errVersion
	}
	response := seen&(mResult|mError) != 0
	if response == (m.Method != nil) {
		return errNotMessage // neither a request nor a response, or both
	}
	if err := p.targets(b, m.Method, m.first); err != nil {
		return err
	}
	m.end = len(b.Targets)
	b.Messages = append(b.Messages, m)
	return nil
}

// field is one member of params the gateway reads.
type field struct {
	set, str bool // present; and a string
	val      []byte
}

func (r *reader) field(f *field, depth int) (err *Error) {
	f.set = true
	if r.peek() == '"' {
		f.str = true
		f.val, err = r.string()
		return err
	}
	return r.skip(depth)
}

// params are the members of a message's params that name targets, read
// whatever the method (params may come before it).
type params struct {
	name, uri                field
	ref                      bool // params.ref is an object
	refType, refName, refURI field
	subsBad                  bool // params.notifications.resourceSubscriptions is not an array of strings
}

var (
	paramMembers         = []string{"name", "uri", "ref", "notifications"}
	refMembers           = []string{"type", "name", "uri"}
	notificationsMembers = []string{"resourceSubscriptions"}
)

// params reads a params object, at '{'.
func (r *reader) params(p *params) *Error {
	return r.object(2, paramMembers, func(i int, depth int) *Error {
		switch i {
		case 0:
			return r.field(&p.name, depth)
		case 1:
			return r.field(&p.uri, depth)
		case 2:
			if r.peek() != '{' {
				return r.skip(depth)
			}
			p.ref = true
			return r.object(depth, refMembers, func(i int, depth int) *Error {
				switch i {
				case 0:
					return r.field(&p.refType, depth)
				case 1:
					return r.field(&p.refName, depth)
				}
				return r.field(&p.refURI, depth)
			})
		default:
			if r.peek() != '{' {
				return r.skip(depth)
			}
			return r.object(depth, notificationsMembers, func(_ int, depth int) *Error {
				return r.subscriptions(p, depth)
			})
		}
	})
}

// object reads an object whose members named in names (letter case aside)
// are read by read(index, depth) and the others skipped, at '{'.
func (r *reader) object(depth int, names []string, read func(i int, depth int) *Error) *Error {
	if depth > maxDepth {
		return errTooDeep
	}
	r.i++
	var seen uint8
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
		bit, err := member(key, names, errParamsFold)
		if err != nil {
			return err
		}
		if seen&bit != 0 {
			return errParamsDup
		}
		seen |= bit
		if bit == 0 {
			err = r.skip(depth + 1)
		} else {
			err = read(bitIndex(bit), depth+1)
		}
		if err != nil {
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

// subscriptions reads resourceSubscriptions, appending each URI to the
// targets (dropped again unless the method is subscriptions/listen).
func (r *reader) subscriptions(p *params, depth int) *Error {
	if r.peek() != '[' {
		p.subsBad = true
		return r.skip(depth)
	}
	r.i++
	r.space()
	if r.peek() == ']' {
		r.i++
		return nil
	}
	for {
		r.space()
		if r.peek() == '"' {
			s, err := r.string()
			if err != nil {
				return err
			}
			r.body.Targets = append(r.body.Targets, Target{Resource, s})
		} else {
			p.subsBad = true
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		r.space()
		switch r.next() {
		case ',':
		case ']':
			return nil
		default:
			return errSyntax
		}
	}
}

// targets appends what a message of method asks to use to b.Targets, and
// notes list and initialize requests. first is where the message's targets
// start.
func (p *params) targets(b *Body, method []byte, first int) *Error {
	keep := b.Targets[:first] // subscriptions/listen keeps what it appended
	switch string(method) {
	case "tools/call":
		if !p.name.str {
			return errToolName
		}
		b.Targets = append(keep, Target{Tool, p.name.val})
	case "prompts/get":
		if !p.name.str {
			return errPromptName
		}
		b.Targets = append(keep, Target{Prompt, p.name.val})
	case "resources/read", "resources/subscribe":
		if !p.uri.str {
			return errResourceURI
		}
		b.Targets = append(keep, Target{Resource, p.uri.val})
	case "completion/complete":
		// A completion reveals what a prompt's or a resource's arguments
		// may be: it is judged as a use of them.
		switch {
		case !p.ref || !p.refType.str:
			return errRef
		case string(p.refType.val) == "ref/prompt" && p.refName.str:
			b.Targets = append(keep, Target{Prompt, p.refName.val})
		case string(p.refType.val) == "ref/resource" && p.refURI.str:
			b.Targets = append(keep, Target{Resource, p.refURI.val})
		default:
			return errRef
		}
	case "subscriptions/listen":
		if p.subsBad {
			return errSubscriptions
		}
	case "tools/list", "resources/list", "resources/templates/list", "prompts/list":
		b.Lists = true
		b.Targets = keep
	case "initialize":
		b.Initialize = true
		b.Targets = keep
	default:
		b.Targets = keep
	}
	return nil
}

// member returns the bit of key among names (0 for a name not there), or
// ambiguous when key differs from one of them only in letter case, Unicode
// folding included.
func member(key []byte, names []string, ambiguous *Error) (uint8, *Error) {
	for i, n := range names {
		if string(key) == n {
			return 1 << i, nil
		}
	}
	for _, n := range names {
		if foldEqual(key, n) {
			return 0, ambiguous
		}
	}
	return 0, nil
}

func bitIndex(bit uint8) int {
	i := 0
	for bit > 1 {
		bit >>= 1
		i++
	}
	return i
}

// foldEqual is strings.EqualFold(string(b), s) without the conversion.
func foldEqual(b []byte, s string) bool {
	if len(b) != len(s) && !slices.ContainsFunc(b, func(c byte) bool { return c >= utf8.RuneSelf }) {
		return false // only non-ASCII letters fold to another length (ſ, K)
	}
	for len(b) > 0 && len(s) > 0 {
		var br, sr rune
		if b[0] < utf8.RuneSelf {
			br, b = rune(b[0]), b[1:]
		} else {
			r, size := utf8.DecodeRune(b)
			br, b = r, b[size:]
		}
		if s[0] < utf8.RuneSelf {
			sr, s = rune(s[0]), s[1:]
		} else {
			r, size := utf8.DecodeRuneInString(s)
			sr, s = r, s[size:]
		}
		if !sameFold(br, sr) {
			return false
		}
	}
	return len(b) == len(s)
}

// sameFold reports whether a and b are equal under Unicode simple case
// folding, as strings.EqualFold compares runes.
func sameFold(a, b rune) bool {
	if a == b {
		return true
	}
	if a > b {
		a, b = b, a
	}
	if b < utf8.RuneSelf {
		return 'A' <= a && a <= 'Z' && b == a+'a'-'A'
	}
	f := unicode.SimpleFold(a)
	for f != a && f < b {
		f = unicode.SimpleFold(f)
	}
	return f == b
}

// key reads an object member's name and the colon after it.
func (r *reader) key() ([]byte, *Error) {
	if r.peek() != '"' {
		return nil, errSyntax
	}
	k, err := r.string()
	if err != nil {
		return nil, err
	}
	r.space()
	if r.next() != ':' {
		return nil, errSyntax
	}
	r.space()
	return k, nil
}

// stringValue reads a string, or fails with notString.
func (r *reader) stringValue(notString *Error) ([]byte, *Error) {
	if r.peek() != '"' {
		return nil, notString
	}
	return r.string()
}

// string reads a string, decoded, at '"'.
func (r *reader) string() ([]byte, *Error) {
	s, escaped, err := r.rawString()
	if err != nil || !escaped {
		return s, err
	}
	return r.body.unescape(s), nil
}

// rawString reads a string at '"' and returns what is between the quotes,
// checked: escapes well formed, no lone surrogate, no control character,
// valid UTF-8.
func (r *reader) rawString() (s []byte, escaped bool, err *Error) {
	r.i++
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if plain[c] {
			r.i++
			continue
		}
		switch {
		case c == '"':
			s = r.b[start:r.i]
			r.i++
			return s, escaped, nil
		case c == '\\':
			escaped = true
			if err := r.escape(); err != nil {
				return nil, false, err
			}
		case c < 0x20:
			return nil, false, errSyntax
		case c < utf8.RuneSelf:
			r.i++
		default:
			ru, size := utf8.DecodeRune(r.b[r.i:])
			if ru == utf8.RuneError && size == 1 && !r.lenient {
				return nil, false, errUTF8
			}
			r.i += size
		}
	}
	return nil, false, errSyntax
}

// plain marks the bytes a string holds as they are: printable ASCII but
// the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// escape checks one escape sequence at '\\'.
func (r *reader) escape() *Error {
	r.i++
	switch r.peek() {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		r.i++
		return nil
	case 'u':
		c, ok := hex4(r.b, r.i+1)
		if !ok {
			return errSyntax
		}
		r.i += 5
		if c < 0xd800 || c > 0xdfff {
			return nil
		}
		if _, ok := lowSurrogate(r.b, r.i); ok && c < 0xdc00 {
			r.i += 6
			return nil
		}
		if r.lenient {
			return nil // decoded as U+FFFD
		}
		return errSurrogate
	}
	return errSyntax
}

// lowSurrogate reads an escaped low surrogate, \uDC00 to \uDFFF, at b[i:].
func lowSurrogate(b []byte, i int) (rune, bool) {
	if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
		return 0, false
	}
	lo, ok := hex4(b, i+2)
	return lo, ok && lo >= 0xdc00 && lo <= 0xdfff
}

// hex4 reads four hexadecimal digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var v rune
	for _, c := range b[i : i+4] {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		v = v<<4 | rune(d)
	}
	return v, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescape decodes a checked string with escapes into b's scratch space.
func (b *Body) unescape(s []byte) []byte {
	start := len(b.scratch)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.scratch = append(b.scratch, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			b.scratch = append(b.scratch, '\b')
		case 'f':
			b.scratch = append(b.scratch, '\f')
		case 'n':
			b.scratch = append(b.scratch, '\n')
		case 'r':
			b.scratch = append(b.scratch, '\r')
		case 't':
			b.scratch = append(b.scratch, '\t')
		case 'u':
			ru, _ := hex4(s, i+1)
			i += 4
			if lo, ok := lowSurrogate(s, i+1); ok && ru >= 0xd800 && ru < 0xdc00 {
				ru = 0x10000 + (ru-0xd800)<<10 + (lo - 0xdc00)
				i += 6
			}
			b.scratch = utf8.AppendRune(b.scratch, ru) // a lone surrogate (lenient) as U+FFFD
		default: // '"', '\\', '/'
			b.scratch = append(b.scratch, s[i])
		}
	}
	return b.scratch[start:len(b.scratch):len(b.scratch)]
}

// skip checks and passes over one JSON value.
func (r *reader) skip(depth int) *Error {
	if depth > maxDepth {
		return errTooDeep
	}
	switch c := r.peek(); {
	case c == '{':
		r.i++
		r.space()
		if r.peek() == '}' {
			r.i++
			return nil
		}
		for {
			r.space()
			if r.peek() != '"' {
				return errSyntax
			}
			if _, _, err := r.rawString(); err != nil {
				return err
			}
			r.space()
			if r.next() != ':' {
				return errSyntax
			}
			r.space()
			if err := r.skip(depth + 1); err != nil {
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
	case c == '[':
		r.i++
		r.space()
		if r.peek() == ']' {
			r.i++
			return nil
		}
		for {
			r.space()
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			r.space()
			switch r.next() {
			case ',':
			case ']':
				return nil
			default:
				return errSyntax
			}
		}
	case c == '"':
		_, _, err := r.rawString()
		return err
	case c == 't':
		return r.literal("true")
	case c == 'f':
		return r.literal("false")
	case c == 'n':
		return r.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return r.number()
	}
	return errSyntax
}

func (r *reader) literal(word string) *Error {
	if !bytes.HasPrefix(r.b[r.i:], []byte(word)) {
		return errSyntax
	}
	r.i += len(word)
	return nil
}

// number passes over a number in JSON's grammar: no NaN, no Infinity, no
// leading zeros, no hexadecimal.
func (r *reader) number() *Error {
	if r.peek() == '-' {
		r.i++
	}
	switch c := r.peek(); {
	case c == '0':
		r.i++
	case '1' <= c && c <= '9':
		r.digits()
	default:
		return errSyntax
	}
	if r.peek() == '.' {
		r.i++
		if !r.digits() {
			return errSyntax
		}
	}
	if c := r.peek(); c == 'e' || c == 'E' {
		r.i++
		if c := r.peek(); c == '+' || c == '-' {
			r.i++
		}
		if !r.digits() {
			return errSyntax
		}
	}
	return nil
}

func (r *reader) digits() bool {
	start := r.i
	for r.i < len(r.b) && '0' <= r.b[r.i] && r.b[r.i] <= '9' {
		r.i++
	}
	return r.i > start
}
