// An MCP client built on the official MCP TypeScript SDK
// (@modelcontextprotocol/sdk, version pinned in package-lock.json) that
// authorizes itself as Claude, VS Code or Cursor do: with the SDK's OAuth
// client provider interface (OAuthClientProvider) and nothing else. It is
// told the MCP server's URL only; the SDK finds the rest (RFC 9728
// protected-resource metadata from the 401's WWW-Authenticate, the
// authorization server's metadata, dynamic client registration, the
// authorization code with PKCE, the token request with the RFC 8707
// resource). Usage:
//
//   node mcp-client.mjs
//
// Environment:
//   MCP_URL          the MCP endpoint (the gateway's), e.g. http://127.0.0.1:8080/mcp
//   MCP_STEP_UP_URL  optional: a second MCP endpoint of the same resource that
//                    needs more scope (403 insufficient_scope); connected to
//                    after MCP_URL with the same provider (same client, same tokens)
//   REDIRECT_URI     the client's redirect URI (default http://127.0.0.1:9/callback);
//                    nobody needs to listen there: the authorization URL is
//                    fetched headlessly, redirects followed by hand
//                    (redirect: "manual"; Location headers, or the JSON
//                    {"url"} Better-Auth answers fetches with) until one
//                    leads to REDIRECT_URI, whose code is read from it. The
//                    authorization server must therefore log the user in and
//                    answer the consent page itself (oauth.mjs `serve` with a
//                    session does).
//   SCOPE            the client metadata's scope (the SDK prefers the
//                    challenge's scope, then the resource metadata's
//                    scopes_supported, and uses this one last)
//
// The provider keeps the client information and the tokens in memory. Every
// step is printed on stdout as one JSON line {"step": ..., ...}:
//   http          every HTTP request the SDK (and the headless browser) made:
//                 method, url, status, www_authenticate, location, and for
//                 metadata, registration and token requests what was sent and
//                 answered (codes and verifiers reduced to their presence)
//   registered    the client information the SDK saved (client_id, ...)
//   authorize     the authorization URL the SDK built, with its parameters
//   code          the redirect that came back to REDIRECT_URI (code present, state, iss)
//   tokens        the tokens the SDK saved: kind (jwt or opaque), scope,
//                 refresh token present, and a JWT's header and claims
//   unauthorized  a connection the SDK ended with UnauthorizedError to have
//                 the user authorize (then finishAuth(code) and a reconnect)
//   connected     initialize succeeded (the server's name)
//   tools         tools/list (names)
//   call          tools/call whoami (structured content)
//   error / done  the end: exit 1 after "error", 0 after "done"
process.env.TZ = "UTC";

import { randomBytes } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const mcpURL = process.env.MCP_URL;
if (!mcpURL) throw new Error("MCP_URL is not set");
const stepUpURL = process.env.MCP_STEP_UP_URL || undefined;
const redirectURI = process.env.REDIRECT_URI || "http://127.0.0.1:9/callback";
const metadataScope = process.env.SCOPE || undefined;

const emit = (step, fields = {}) => process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");

// jwtParts decodes a JWT's header and claims, or returns null for an opaque token.
function jwtParts(tok) {
  const parts = tok.split(".");
  if (parts.length !== 3) return null;
  try {
    const dec = (p) => JSON.parse(Buffer.from(p, "base64url").toString());
    return { header: dec(parts[0]), claims: dec(parts[1]) };
  } catch {
    return null;
  }
}

// formOf describes a form body without its secrets (codes, verifiers, tokens).
const secret = new Set(["code", "code_verifier", "refresh_token", "client_secret"]);
function formOf(body) {
  const out = {};
  for (const [k, v] of new URLSearchParams(body)) out[k] = secret.has(k) ? { present: v.length > 0 } : v;
  return out;
}

// loggingFetch is the fetch the SDK is given: every request it makes is
// printed, with the bodies that show the discovery.
async function loggingFetch(input, init = {}) {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = init.method ?? (input instanceof Request ? input.method : "GET");
  const res = await fetch(input, init);
  const entry = { method, url: url.href, status: res.status };
  const wa = res.headers.get("www-authenticate");
  if (wa) entry.www_authenticate = wa;
  const loc = res.headers.get("location");
  if (loc) entry.location = loc;
  const path = url.pathname;
  const isMetadata = path.includes("/.well-known/");
  const isToken = path.endsWith("/oauth2/token");
  const isRegister = path.endsWith("/oauth2/register");
  if (isToken && init.body) entry.form = formOf(String(init.body));
  if (isRegister && init.body) entry.sent = JSON.parse(String(init.body));
  if (isMetadata && method === "GET") entry.mcp_protocol_version = new Headers(init.headers).get("mcp-protocol-version");
  if ((isMetadata || isToken || isRegister) && res.headers.get("content-type")?.includes("json")) {
    let body = await res.clone().json().catch(() => null);
    if (isToken && body && typeof body === "object") {
      body = { ...body };
      for (const k of ["access_token", "refresh_token", "id_token"]) if (k in body) body[k] = { present: true };
    }
    if (isMetadata && body && typeof body === "object" && !path.includes("oauth-protected-resource")) {
      // The authorization server's metadata is long: what the flow uses.
      const { issuer, authorization_endpoint, token_endpoint, registration_endpoint, code_challenge_methods_supported,
        token_endpoint_auth_methods_supported, scopes_supported, response_types_supported } = body;
      body = { issuer, authorization_endpoint, token_endpoint, registration_endpoint, code_challenge_methods_supported,
        token_endpoint_auth_methods_supported, scopes_supported, response_types_supported };
    }
    entry.body = body;
  }
  if (isRegister && res.ok) entry.client_id = (await res.clone().json().catch(() => ({}))).client_id;
  emit("http", entry);
  return res;
}

// authorizeHeadlessly plays the user agent: it opens the authorization URL
// and follows the redirects (login and consent are the authorization
// server's business) until one leads to the redirect URI, and returns that
// redirect's code. Node's fetch always says sec-fetch-mode: cors, so
// Better-Auth answers /oauth2/authorize as it answers a browser's fetch:
// 200 {"redirect": true, "url"}, followed here like a Location.
async function authorizeHeadlessly(authorizationURL, state) {
  let u = new URL(authorizationURL);
  for (let hop = 0; hop < 10; hop++) {
    if (u.href.startsWith(redirectURI)) {
      const q = u.searchParams;
      emit("code", { code: q.has("code"), state: q.get("state"), state_matches: q.get("state") === state, iss: q.get("iss"), error: q.get("error"), error_description: q.get("error_description") });
      if (q.get("error")) throw new Error(`authorization refused: ${q.get("error")}: ${q.get("error_description")}`);
      if (q.get("state") !== state) throw new Error(`state ${q.get("state")} is not ${state}`);
      return q.get("code");
    }
    const res = await fetch(u, { redirect: "manual", headers: { accept: "text/html" } });
    let next = res.headers.get("location");
    if (!next && res.ok && res.headers.get("content-type")?.includes("json")) {
      const body = await res.json();
      next = body.url ?? body.redirect_uri;
    } else {
      await res.body?.cancel();
    }
    emit("http", { method: "GET", url: u.origin + u.pathname, status: res.status, location: next ? new URL(next, u).origin + new URL(next, u).pathname : null, browser: true });
    if (!next) throw new Error(`authorization: ${res.status} at ${u.origin}${u.pathname} leads nowhere`);
    u = new URL(next, u);
  }
  throw new Error("authorization: too many redirects");
}

// Provider is the OAuthClientProvider: everything in memory.
class Provider {
  constructor() {
    this.code = undefined; // the code the last authorization brought back
  }
  get redirectUrl() {
    return redirectURI;
  }
  get clientMetadata() {
    return {
      client_name: "mcp-client.mjs (MCP TypeScript SDK)",
      redirect_uris: [redirectURI],
      // Better-Auth registers clients as "web" by default, which may not
      // redirect to http://127.0.0.1; the SDK sends the metadata as given.
      application_type: "native",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      ...(metadataScope ? { scope: metadataScope } : {}),
    };
  }
  state() {
    this._state = randomBytes(16).toString("base64url");
    return this._state;
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
    emit("registered", { client_id: info.client_id, token_endpoint_auth_method: info.token_endpoint_auth_method, scope: info.scope, issuer: info.issuer, secret: "client_secret" in info });
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
    const jwt = jwtParts(tokens.access_token);
    emit("tokens", {
      kind: jwt ? "jwt" : "opaque", token_type: tokens.token_type, scope: tokens.scope, expires_in: tokens.expires_in,
      refresh_token: !!tokens.refresh_token, issuer: tokens.issuer, header: jwt?.header, claims: jwt?.claims,
    });
  }
  async redirectToAuthorization(url) {
    const params = Object.fromEntries(url.searchParams);
    if (params.code_challenge) params.code_challenge = { present: true };
    emit("authorize", { endpoint: url.origin + url.pathname, params });
    this.code = await authorizeHeadlessly(url, this._state);
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    if (!this._verifier) throw new Error("no code verifier saved");
    return this._verifier;
  }
  invalidateCredentials(scope) {
    emit("invalidate", { scope });
    if (scope === "all" || scope === "client") this._client = undefined;
    if (scope === "all" || scope === "tokens") this._tokens = undefined;
    if (scope === "all" || scope === "verifier") this._verifier = undefined;
  }
}

const provider = new Provider();

// connect opens an MCP session on url; when the SDK stops to have the user
// authorize (UnauthorizedError, after redirectToAuthorization), it
// finishes with the code the headless browser brought back
// (transport.finishAuth) and connects again, as the SDK's examples do.
async function connect(label, url) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: loggingFetch });
    const client = new Client({ name: "mcp-client.mjs", version: "1.0.0" });
    provider.code = undefined;
    try {
      await client.connect(transport);
      emit("connected", { label, url, server: client.getServerVersion(), session: transport.sessionId ?? null });
      return client;
    } catch (e) {
      await transport.close().catch(() => {});
      if (!(e instanceof UnauthorizedError) || !provider.code) throw e;
      emit("unauthorized", { label, url, message: e.message });
      await transport.finishAuth(provider.code);
    }
  }
  throw new Error(`${label}: still unauthorized after two authorizations`);
}

async function exercise(label, client) {
  const tools = await client.listTools();
  emit("tools", { label, names: tools.tools.map((t) => t.name) });
  const res = await client.callTool({ name: "whoami", arguments: {} });
  emit("call", { label, tool: "whoami", isError: !!res.isError, structured: res.structuredContent ?? null, text: res.content?.[0]?.text ?? null });
  if (res.isError) throw new Error(`${label}: whoami failed: ${res.content?.[0]?.text}`);
}

try {
  const main = await connect("main", mcpURL);
  await exercise("main", main);
  if (stepUpURL) {
    const admin = await connect("step-up", stepUpURL);
    await exercise("step-up", admin);
    // The first session goes on with the token the step-up brought.
    const res = await main.callTool({ name: "whoami", arguments: {} });
    emit("call", { label: "main-after-step-up", tool: "whoami", isError: !!res.isError, structured: res.structuredContent ?? null });
    await admin.close();
  }
  await main.close();
  emit("done");
  process.exit(0);
} catch (e) {
  emit("error", { name: e?.constructor?.name, message: String(e?.message ?? e), code: e?.code, stack: String(e?.stack ?? "") });
  process.exit(1);
}
