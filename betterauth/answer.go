package betterauth

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Answers are the HTTP answers to denied requests, built once per realm,
// the same in every front end: the status, the JSON body
// {"code": ..., "message": ...} and the headers.
type Answers struct {
	byReason [NumReasons]answer
}

type answer struct {
	status  int
	body    []byte
	headers []Header
}

// Challenge is what 401 answers say in WWW-Authenticate.
type Challenge struct {
	// Realm; default "better-auth".
	Realm string
	// ResourceMetadata, when set, is the URL of the protected resource's
	// RFC 9728 metadata, from which MCP clients find the authorization
	// server; Scope the scopes a token needs, space-separated.
	ResourceMetadata, Scope string
}

// NewAnswers builds the answers for a WWW-Authenticate realm (default
// "better-auth").
func NewAnswers(realm string) *Answers { return NewAnswersFor(Challenge{Realm: realm}) }

// NewAnswersFor builds the answers for a challenge.
func NewAnswersFor(c Challenge) *Answers {
	realm := c.Realm
	if realm == "" {
		realm = "better-auth"
	}
	quote := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace
	realm = quote(realm)
	params := ""
	if c.ResourceMetadata != "" {
		params += `, resource_metadata="` + quote(c.ResourceMetadata) + `"`
	}
	if c.Scope != "" {
		params += `, scope="` + quote(c.Scope) + `"`
	}
	a := &Answers{}
	for _, r := range Reasons() {
		o := r.Outcome()
		body, _ := json.Marshal(struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{o.Code, o.Message})
		ans := answer{status: o.Status, body: body, headers: []Header{
			{"Content-Type", "application/json"},
			{"Cache-Control", "no-store"},
		}}
		if o.Status == 401 {
			challenge := `Bearer realm="` + realm + `"` + params
			if r != MissingCredential {
				// RFC 6750 §3.1: no error code when no credential was sent.
				challenge += `, error="invalid_token", error_description="` + o.Message + `"`
			}
			ans.headers = append(ans.headers, Header{"WWW-Authenticate", challenge})
		}
		if r == BackendUnavailable {
			ans.headers = append(ans.headers, Header{"Retry-After", "1"})
		}
		a.byReason[r] = ans
	}
	return a
}

// For returns the answer to a denied decision. Headers are in canonical
// form; callers must not change the returned slices.
func (a *Answers) For(d Decision) (status int, headers []Header, body []byte) {
	ans := a.byReason[d.Reason]
	headers = ans.headers
	if d.RetryAfter > 0 {
		secs := int64((d.RetryAfter + time.Second - 1) / time.Second)
		headers = append(headers[:len(headers):len(headers)], Header{"Retry-After", strconv.FormatInt(secs, 10)})
	}
	if d.Usage != nil {
		headers = d.Usage.AppendClientHeaders(headers[:len(headers):len(headers)])
	}
	return ans.status, headers, ans.body
}
