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
	// stepUp is InsufficientScope's answer to an OAuth token, whose
	// client may ask for the scopes the challenge names.
	stepUp    answer
	challenge Challenge
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
	// NeededScope is what 403 insufficient_scope answers ask an OAuth
	// token's client for: every scope the route needs, held ones included
	// (space-separated). Default: Scope.
	NeededScope string
}

// NewAnswers builds the answers for a WWW-Authenticate realm (default
// "better-auth").
func NewAnswers(realm string) *Answers { return NewAnswersFor(Challenge{Realm: realm}) }

// NewAnswersFor builds the answers for a challenge.
func NewAnswersFor(c Challenge) *Answers {
	realm := c.realm()
	params := ""
	if c.ResourceMetadata != "" {
		params += `, resource_metadata="` + quote(c.ResourceMetadata) + `"`
	}
	if c.Scope != "" {
		params += `, scope="` + quote(c.Scope) + `"`
	}
	a := &Answers{challenge: c}
	base := func(o Outcome) answer {
		body, _ := json.Marshal(struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{o.Code, o.Message})
		return answer{status: o.Status, body: body, headers: []Header{
			{"Content-Type", "application/json"},
			{"Cache-Control", "no-store"},
		}}
	}
	for _, r := range Reasons() {
		o := r.Outcome()
		ans := base(o)
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
	// RFC 6750 §3.1 and the MCP specification's step-up: the scopes named
	// are all the route needs, so that the new token holds them all.
	needed := c.NeededScope
	if needed == "" {
		needed = c.Scope
	}
	a.stepUp = base(InsufficientScope.Outcome())
	a.stepUp.headers = append(a.stepUp.headers, Header{"WWW-Authenticate", c.InsufficientScope(needed)})
	return a
}

// quote escapes a WWW-Authenticate parameter's value for its quotes.
var quote = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace

// realm is the challenge's realm, quoted.
func (c Challenge) realm() string {
	if c.Realm == "" {
		return "better-auth"
	}
	return quote(c.Realm)
}

// InsufficientScope returns the WWW-Authenticate value of a 403 answer to
// an OAuth token short of a scope (RFC 6750 §3.1, and MCP's step-up):
// error="insufficient_scope" naming needed (space-separated: every scope
// the request needs, held ones included, so that the token its client
// asks for holds them all), and the resource's metadata.
func (c Challenge) InsufficientScope(needed string) string {
	challenge := `Bearer realm="` + c.realm() + `", error="insufficient_scope"`
	if needed != "" {
		challenge += `, scope="` + quote(needed) + `"`
	}
	if c.ResourceMetadata != "" {
		challenge += `, resource_metadata="` + quote(c.ResourceMetadata) + `"`
	}
	return challenge + `, error_description="` + InsufficientScope.Outcome().Message + `"`
}

// For returns the answer to a denied decision. Headers are in canonical
// form; callers must not change the returned slices.
func (a *Answers) For(d Decision) (status int, headers []Header, body []byte) {
	ans := a.byReason[d.Reason]
	if d.Reason == InsufficientScope && d.Method == MethodOAuth {
		ans = a.stepUp
	}
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
