// Package mcp is per-tool authorization for MCP (Model Context Protocol)
// servers behind caddy-betterauth, with no Caddy and no Envoy in it: what a
// request asks to use (a tool, a resource, a prompt), read from its
// JSON-RPC body, from the Mcp-Method and Mcp-Name headers of revision
// 2026-07-28, or from Envoy's MCP filter; rules saying which credentials
// may use what; list answers (tools/list, resources/list, prompts/list)
// filtered to what the caller may use, in JSON and in server-sent events;
// and sessions (Mcp-Session-Id, revisions 2025-03-26 to 2025-11-25) bound
// to the principal that opened them.
//
// A Guard holds the configuration; each request gets a Call, which plugs
// into betterauth.Gate as its Authorizer, so that a refused call spends no
// rate limit and no usage, and renders refusals as JSON-RPC errors.
//
// The reader is strict where parsers differ, so that what the gateway
// judges is what any upstream executes: a body it cannot read the same way
// every JSON parser would (duplicate members, members that differ from
// "method", "params" or "name" only in letter case, invalid UTF-8, lone
// surrogates, trailing data) is refused, never passed on unjudged.
package mcp
