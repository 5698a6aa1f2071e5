// Package betterauth decides whether a request's credential is accepted by
// Better-Auth, applying Better-Auth's own rules to the records it stores.
//
// The package knows nothing about Caddy, Envoy or any database driver. A front
// end extracts a [Credential] from request headers with an [Extractor], asks a
// [Verifier] for a [Decision], and renders the decision with the [Outcome]
// table and [Decision.Headers]. Records come from a [Store]; the pgstore package
// reads them from PostgreSQL and the cache package keeps verified records in
// memory.
//
// A deny is a value, never an error: Verify returns an error only when the
// verification could not be completed (the store is down or timed out), and
// callers must then fail closed with [BackendUnavailable].
package betterauth
