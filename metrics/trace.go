package metrics

import (
	"go.opentelemetry.io/otel/attribute"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// Trace attributes and the tracer name, shared by the front ends (the Caddy
// handler, the ext_authz server) and the cache. None carries a credential.
const (
	// TracerName names the tracer of the gateway's own spans.
	TracerName = "github.com/caddy-betterauth/caddy-betterauth"
	// AttrMethod: api_key, session or oauth (absent without a credential).
	AttrMethod = "better_auth.method"
	// AttrDecision: allow, deny, or error (the store could not answer).
	AttrDecision = "better_auth.decision"
	// AttrCode: the answer's code, OK or the deny code (INVALID_API_KEY...).
	AttrCode = "better_auth.code"
	// AttrCache: the tier that answered the lookup (memory, stale,
	// negative, shared, database), set by the cache; absent when none was
	// asked.
	AttrCache = "better_auth.cache"
)

var (
	decisionAttrs = [...]attribute.KeyValue{
		attribute.String(AttrDecision, "allow"),
		attribute.String(AttrDecision, "deny"),
		attribute.String(AttrDecision, "error"),
	}
	tierAttrs = func() (a [numTiers]attribute.KeyValue) {
		for t := range a {
			a[t] = attribute.String(AttrCache, Tier(t).String())
		}
		return a
	}()
)

// TierAttribute is the AttrCache attribute of t.
func TierAttribute(t Tier) attribute.KeyValue {
	if t >= numTiers {
		return attribute.String(AttrCache, t.String())
	}
	return tierAttrs[t]
}

// DecisionAttributes are the attributes a front end puts on the request's
// span for res: how the caller authenticated (from the credential's kind
// when the decision does not say), the decision and its code.
func DecisionAttributes(res *betterauth.Result) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 3)
	if s := res.Method().String(); s != "" {
		attrs = append(attrs, attribute.String(AttrMethod, s))
	}
	d := decisionAttrs[1]
	switch {
	case res.Err != nil:
		d = decisionAttrs[2]
	case res.Allowed():
		d = decisionAttrs[0]
	}
	return append(attrs, d, attribute.String(AttrCode, res.Decision.Reason.String()))
}
