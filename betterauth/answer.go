package betterauth

import (
	"encoding/json"
	"slices"
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
	// client may ask for the scopes the challenge names: needed, and
	// the challenge around the scope parameter.
	stepUp                 answer
	needed                 []string
	stepUpHead, stepUpTail string
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
	o := InsufficientScope.Outcome()
	a.stepUp = base(o)
	a.needed = strings.Fields(needed)
	a.stepUpHead = `Bearer realm="` + realm + `", error="insufficient_scope"`
	if c.ResourceMetadata != "" {
		a.stepUpTail = `, resource_metadata="` + quote(c.ResourceMetadata) + `"`
	}
	a.stepUpTail += `, error_description="` + o.Message + `"`
	a.stepUp.headers = append(a.stepUp.headers, Header{"WWW-Authenticate", a.stepUpChallenge(nil)})
	return a
}

// stepUpChallenge is the insufficient_scope challenge to a token holding
// held: its scope parameter names the scopes already granted, then those
// the route needs. A client asks for exactly the scopes named (the MCP
// specification of 2025-11-25 has servers repeat the granted ones), and
// would otherwise lose the ones it holds at each step up, swinging between
// tokens. Held scopes that are not RFC 6749 scope tokens are left out: they
// could not be quoted.
func (a *Answers) stepUpChallenge(held []string) string {
	_, challenge := a.StepUp(held, nil)
	return challenge
}

// StepUp returns the scope parameter and the WWW-Authenticate value of the
// insufficient_scope answer to a token holding held, for a request that
// needs more than the route does (an MCP tool's scopes): the scopes named
// are held's, the route's, then more's, each once.
func (a *Answers) StepUp(held, more []string) (scope, challenge string) {
	var scopes []string
	for _, s := range slices.Concat(held, a.needed, more) {
		if IsScopeToken(s) && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	if len(scopes) == 0 {
		return "", a.stepUpHead + a.stepUpTail
	}
	scope = strings.Join(scopes, " ")
	return scope, a.stepUpHead + `, scope="` + scope + `"` + a.stepUpTail
}

// For returns the answer to a denied decision. Headers are in canonical
// form; callers must not change the returned slices.
func (a *Answers) For(d Decision) (status int, headers []Header, body []byte) {
	ans := a.byReason[d.Reason]
	if d.Reason == InsufficientScope && d.Method == MethodOAuth {
		ans = a.stepUp
		if len(d.Scopes) > 0 {
			// Built for this token: a refusal, off the hot path.
			ans.headers = append(slices.Clip(ans.headers[:len(ans.headers)-1]), Header{"WWW-Authenticate", a.stepUpChallenge(d.Scopes)})
		}
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
