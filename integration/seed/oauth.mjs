// Drives real Better-Auth's OAuth provider (@better-auth/oauth-provider,
// version pinned in package-lock.json) so that the integration tests can use
// access tokens Better-Auth itself issued. Usage:
//
//   node oauth.mjs shell     answers one JSON command per stdin line, one JSON line each
//
// Environment:
//   DATABASE_URL         a PostgreSQL URL, sqlite:<path> (better-sqlite3), or
//                        mysql://user:pass@host:port/db (mysql2, as seed.mjs)
//   BETTER_AUTH_SECRET   the app's secret
//   BASE_URL             the app's baseURL (default http://localhost:3000); the
//                        basePath is Better-Auth's default /api/auth, so the
//                        issuer of access tokens is BASE_URL + "/api/auth"
//   RESOURCE             the protected resource (RFC 8707 audience), default
//                        http://127.0.0.1:8080/mcp
//   JWT_ISSUER           the jwt plugin's jwt.issuer (default BASE_URL + "/api/auth"):
//                        the iss of access tokens, and setup's "issuer"
//   EXTRA_SCOPES         more scopes (space-separated) for the provider and
//                        setup's client
//   OAUTH_DEBUG=1        keep Better-Auth's logger on (stderr)
//
// The app: betterAuth({ emailAndPassword, plugins: [bearer(), jwt(),
// oauthProvider({...})] }) with the scopes openid profile email
// offline_access mcp:read mcp:write mcp:admin; RESOURCE is declared in the
// provider's `resources` option (the provider seeds its oauthResource row
// when it first looks a resource up; setup creates it at once through the
// admin API) and in `clientRegistrationDefaultResources`, so that clients
// registered dynamically (allowed, also unauthenticated, as MCP clients do)
// are linked to it. enforcePerClientResources is left at its default, true:
// a client must be linked to a resource to get tokens for it. loginPage is
// "/login", consentPage "/consent" (served by `serve` only).
//
// Commands are JSON objects {"op": name, ...arguments}. Every answer is one
// JSON object; a failure is {"error": "..."} (the shell keeps running).
// "session" arguments are signed session tokens (the set-auth-token value,
// "<token>.<signature>"); they default to Alice's from setup.
//
//   {"op":"setup"}
//       runs the migrations, signs up alice@example.com and bob@example.com,
//       creates the oauthResource row for RESOURCE (adminCreateOAuthResource),
//       and a confidential client (adminCreateOAuthClient, owned by Alice):
//       application_type native, client_secret_basic, grant types
//       authorization_code client_credentials refresh_token, redirect URI
//       http://127.0.0.1:9/callback, scopes openid profile email
//       offline_access mcp:read mcp:write mcp:admin, client_credentials
//       scopes mcp:read mcp:write mcp:admin, linked to RESOURCE
//       (adminLinkClientResource).
//       → {"users": {"alice": U, "bob": U}, "client": C, "resource", "issuer",
//          "baseURL", "jwksURL", "database": "postgres"|"sqlite"|"mysql"}
//         U = {"id","email","name","signed","token","sessionId"}
//         C = {"client_id","client_secret","client_secret_hash", ...the provider's answer}
//   {"op":"create-client", "public"?: bool, "name"?, "grant_types"?: [...],
//    "scope"?: "...", "client_credentials_scopes"?: [...], "redirect_uris"?: [...],
//    "skip_consent"?: bool, "link_resource"?: bool (default true), "session"?}
//       another client, created and linked the same way (defaults as setup's
//       client; "public": true makes a public client, token_endpoint_auth_method
//       none, grant types authorization_code refresh_token, no secret). The
//       provider links every new client to RESOURCE (it is a registration
//       default resource); "link_resource": false unlinks it again.
//       → C, whose "resources" are the client's oauthClientResource links
//   {"op":"create-resource", "identifier", "name"?, "client_id"?, "session"?}
//       another oauthResource row (adminCreateOAuthResource), linked to the
//       client when client_id is given → {"identifier"}
//   {"op":"token-cc", "client_id", "client_secret", "scope"?, "resource"?}
//       POST /oauth2/token grant_type=client_credentials (form, client_secret_basic)
//       → the token endpoint's JSON body plus "status" (its HTTP status); a
//         refusal carries the provider's "error"/"error_description".
//   {"op":"token-code", "client_id", "client_secret"?, "scope"?, "resource"?,
//    "session"?, "redirect_uri"?, "prompt"?}
//       the authorization-code flow with PKCE (S256), headless: GET
//       /oauth2/authorize with the session cookie; when the provider asks for
//       consent (a redirect to /consent), POST /oauth2/consent {accept: true,
//       oauth_query}; then POST /oauth2/token with the code, the verifier and
//       the redirect URI (client_secret_basic with a secret, else client_id in
//       the form). "resource" is sent to both the authorize and token requests.
//       → the token response plus "status", "consent" (true when consent was
//         asked), "code".
//   {"op":"refresh", "client_id", "client_secret"?, "refresh_token", "scope"?, "resource"?}
//       → the token response plus "status"
//   {"op":"revoke", "token", "client_id", "client_secret", "token_type_hint"?}
//       POST /oauth2/revoke → {"status", "body"}
//   {"op":"introspect", "token", "client_id", "client_secret", "token_type_hint"?}
//       POST /oauth2/introspect → {"status", "body"} (500s included)
//   {"op":"disable-client", "client_id"} / {"op":"enable-client", "client_id"}
//       sets oauthClient.disabled through Better-Auth's own database adapter
//       (ctx.adapter.update), as an admin tool of the app would: the
//       provider's update-client endpoints have no "disabled" field.
//       → {"client_id", "disabled"}
//   {"op":"sign-out", "session"}
//       auth.api.signOut with that session (its access tokens get "revoked",
//       their sessionId becomes NULL) → {"success": true}
//   {"op":"delete-resource", "identifier"?}  (default RESOURCE)
//       adminDeleteOAuthResource → {"deleted": true}. The configured resource
//       is seeded again by the next process that starts on this database.
//   {"op":"age-token", "token", "ms"?}
//       moves the stored access token's expiresAt to now − ms (default 60000),
//       found by its stored hash → {"updated": n, "expiresAt"}
//   {"op":"session-jwt", "session"?}
//       GET /token (jwt plugin) with the session → {"status", "token"}
//   {"op":"jwks"}
//       → {"rows": [{"id","publicKey" (parsed JWK),"alg","crv","createdAt","expiresAt"}],
//          "served": the JSON of GET /jwks, "url"}
//   {"op":"row", "token"}
//       → {"hash": base64url-nopad(SHA-256(token)), "row": the oauthAccessToken
//          row found by it, as stored (dates as ISO strings), or null}
//   {"op":"refresh-row", "token"} → the same for oauthRefreshToken
//   {"op":"client-row", "client_id"} → {"row": the oauthClient row}
//   {"op":"sql", "query", "params"?: [...]} → {"rows": [...]} (read-only use, for assertions)
//   {"op":"ddl"} → {"sql": the SQL of Better-Auth's migrations for this database}
//   {"op":"serve", "port"?, "session"?, "grants"?: ["scope ...", ...]}
//       starts an HTTP server (node:http → auth.handler) on 127.0.0.1 and
//       answers {"url", "issuer", "jwksURL", "issuerMatches"}; the shell keeps
//       answering. The issuer is fixed when the app starts: start the shell
//       with BASE_URL=http://127.0.0.1:<port> and serve without a port (the
//       port then comes from BASE_URL); "port": 0 picks a free port but the
//       issuer then does not match (issuerMatches false). With "session", the
//       server acts as that user's browser: an /api/auth/oauth2/authorize
//       request without a cookie is given the session's cookie, and GET
//       /consent (the consent page) accepts at once and redirects to the
//       client with the code. "grants" are what the user ticks on the
//       consent pages shown, one entry per page in turn (POST /oauth2/consent
//       {scope}: a subset of the scopes asked for); once they are used up,
//       or for a null entry, the user accepts every scope asked for. GET
//       /login answers 401 (no login page).
//   {"op":"consents"}
//       → {"consents": [{"client_id", "requested", "granted", "status"}]}: the
//         consent pages the served browser answered so far, in order.
process.env.TZ = "UTC";

import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { betterAuth } from "better-auth";
import { bearer, jwt } from "better-auth/plugins";
import { oauthProvider } from "@better-auth/oauth-provider";
import { getMigrations } from "better-auth/db/migration";
import pg from "pg";

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL is not set");
const sqlitePath = url.startsWith("sqlite:") ? url.slice("sqlite:".length).replace(/^\/\//, "") : null;
const mysql = url.startsWith("mysql:");
const Database = sqlitePath ? (await import("better-sqlite3")).default : null;
// mysql2's promise pool, with JS Dates as UTC wall time (see seed.mjs).
const db = sqlitePath ? new Database(sqlitePath)
  : mysql ? (await import("mysql2/promise")).createPool({ uri: url, timezone: "Z", connectionLimit: 10 })
  : new pg.Pool({ connectionString: url });
// sql runs a statement written with ? placeholders and "quoted"
// identifiers on any of the databases (backticks on MySQL: the statements
// here quote nothing else with double quotes).
async function sql(text, params = []) {
  if (sqlitePath) {
    const st = db.prepare(text);
    return st.reader ? st.all(...params) : (st.run(...params), []);
  }
  if (mysql) {
    const [rows] = await db.query(text.replace(/"/g, "`"), params);
    return Array.isArray(rows) ? rows : [];
  }
  let i = 0;
  return (await db.query(text.replace(/\?/g, () => `$${++i}`), params)).rows;
}

const baseURL = (process.env.BASE_URL ?? "http://localhost:3000").replace(/\/+$/, "");
const basePath = "/api/auth";
const resource = process.env.RESOURCE ?? "http://127.0.0.1:8080/mcp";
const redirectURI = "http://127.0.0.1:9/callback";
// EXTRA_SCOPES (space-separated) adds scopes to the provider's, and to the
// ones setup's client may ask for (user and client_credentials).
const extraScopes = (process.env.EXTRA_SCOPES ?? "").split(" ").filter(Boolean);
const scopes = ["openid", "profile", "email", "offline_access", "mcp:read", "mcp:write", "mcp:admin", ...extraScopes];
const m2mScopes = ["mcp:read", "mcp:write", "mcp:admin", ...extraScopes];

const auth = betterAuth({
  secret: process.env.BETTER_AUTH_SECRET,
  baseURL,
  database: db,
  logger: { disabled: process.env.OAUTH_DEBUG !== "1" },
  emailAndPassword: { enabled: true },
  plugins: [
    bearer(),
    jwt(process.env.JWT_ISSUER ? { jwt: { issuer: process.env.JWT_ISSUER } } : undefined),
    oauthProvider({
      loginPage: "/login",
      consentPage: "/consent",
      scopes,
      resources: [{ identifier: resource, name: "MCP server" }],
      clientRegistrationDefaultResources: [resource],
      allowDynamicClientRegistration: true,
      allowUnauthenticatedClientRegistration: true,
      // Any signed-in user may manage clients here; without this hook the
      // provider refuses to give a client client_credentials scopes.
      clientPrivileges: () => true,
    }),
  ],
});
const ctx = await auth.$context;
const issuer = baseURL + basePath;
const tokenIssuer = process.env.JWT_ISSUER ?? issuer;

// hash is how the provider stores tokens (storeTokens: "hashed"):
// base64url without padding of SHA-256 of the token.
const hash = (s) => createHash("sha256").update(s).digest("base64url");

// call sends a request through auth.handler, as a client over HTTP would.
async function call(method, path, { headers = {}, form, json, query } = {}) {
  const u = new URL(baseURL + basePath + path);
  for (const [k, v] of Object.entries(query ?? {})) {
    for (const x of [v].flat()) if (x !== undefined && x !== null) u.searchParams.append(k, x);
  }
  const h = new Headers(headers);
  let body;
  if (form) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) {
      for (const x of [v].flat()) if (x !== undefined && x !== null) p.append(k, x);
    }
    body = p.toString();
    h.set("content-type", "application/x-www-form-urlencoded");
  } else if (json) {
    body = JSON.stringify(json);
    h.set("content-type", "application/json");
  }
  const res = await auth.handler(new Request(u, { method, headers: h, body, redirect: "manual" }));
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

const basic = (id, secret) => ({
  authorization: "Basic " + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64"),
});
// clientAuth authenticates a confidential client with client_secret_basic;
// a public client just names itself in the form.
const clientAuth = (c) => (c.client_secret ? { headers: basic(c.client_id, c.client_secret), form: {} } : { headers: {}, form: { client_id: c.client_id } });
const cookieName = ctx.authCookies.sessionToken.name;
const cookieOf = (signed) => ({ cookie: `${cookieName}=${encodeURIComponent(signed)}`, origin: new URL(baseURL).origin });
const bearerOf = (signed) => new Headers({ authorization: `Bearer ${signed}` });

let state = {};
const sessionOf = (c) => {
  const s = c.session ?? state.users?.alice?.signed;
  if (!s) throw new Error("no session: pass \"session\" or run setup first");
  return s;
};

async function signUp(email, name) {
  const res = await auth.api.signUpEmail({ body: { email, password: "password1234", name }, asResponse: true });
  if (!res.ok) throw new Error(`sign-up ${email}: ${res.status} ${await res.text()}`);
  const signed = res.headers.get("set-auth-token");
  const { user } = await res.json();
  const token = signed.split(".")[0];
  const [row] = await sql(`SELECT "id" FROM "session" WHERE "token" = ?`, [token]);
  return { id: user.id, email, name, signed, token, sessionId: row.id };
}

// createClient registers a client through the provider's admin endpoint
// (server-side, with the owner's session) and links it to the resource.
async function createClient(c) {
  const isPublic = c.public === true;
  const grantTypes = c.grant_types ?? (isPublic ? ["authorization_code", "refresh_token"] : ["authorization_code", "client_credentials", "refresh_token"]);
  const body = {
    client_name: c.name ?? (isPublic ? "public test client" : "test client"),
    redirect_uris: c.redirect_uris ?? [redirectURI],
    application_type: "native",
    token_endpoint_auth_method: isPublic ? "none" : "client_secret_basic",
    grant_types: grantTypes,
    response_types: grantTypes.includes("authorization_code") ? ["code"] : undefined,
    scope: c.scope ?? scopes.join(" "),
    ...(grantTypes.includes("client_credentials") ? { client_credentials_scopes: c.client_credentials_scopes ?? m2mScopes } : {}),
    ...(c.skip_consent !== undefined ? { skip_consent: c.skip_consent } : {}),
  };
  const headers = bearerOf(sessionOf(c));
  const client = await auth.api.adminCreateOAuthClient({ body, headers });
  // The provider links every new client to clientRegistrationDefaultResources
  // already; linking again is a no-op ("alreadyLinked").
  const params = { identifier: c.resource ?? resource, client_id: client.client_id };
  if (c.link_resource === false) await auth.api.adminUnlinkClientResource({ params, headers });
  else await auth.api.adminLinkClientResource({ params, headers });
  const links = await sql(`SELECT "resourceId" FROM "oauthClientResource" WHERE "clientId" = ?`, [client.client_id]);
  return { ...client, resources: links.map((l) => l.resourceId), client_secret_hash: client.client_secret ? hash(client.client_secret) : undefined };
}

function pkce() {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: hash(verifier) };
}

const withStatus = (r) => (r.body && typeof r.body === "object" && !Array.isArray(r.body) ? { ...r.body, status: r.status } : { status: r.status, body: r.body });

// authorize runs the user's side of the code flow and returns the code.
async function authorize(c) {
  const { verifier, challenge } = pkce();
  const state_ = randomBytes(8).toString("hex");
  const redirect = c.redirect_uri ?? redirectURI;
  const cookie = cookieOf(sessionOf(c));
  const r = await call("GET", "/oauth2/authorize", {
    headers: cookie,
    query: {
      response_type: "code", client_id: c.client_id, redirect_uri: redirect, scope: c.scope, state: state_,
      code_challenge: challenge, code_challenge_method: "S256", resource: c.resource, prompt: c.prompt,
    },
  });
  let location = r.headers.get("location") ?? (r.body && r.body.url);
  if (!location) throw new Error(`authorize: ${r.status} ${JSON.stringify(r.body)}`);
  let consent = false;
  if (location.startsWith("/consent?")) {
    consent = true;
    const q = location.slice("/consent?".length);
    const cr = await call("POST", "/oauth2/consent", { headers: cookie, json: { accept: true, oauth_query: q } });
    location = cr.body?.url ?? cr.body?.redirect_uri ?? cr.headers.get("location");
    if (!location) throw new Error(`consent: ${cr.status} ${JSON.stringify(cr.body)}`);
  }
  if (location.startsWith("/login?")) throw new Error("authorize: the provider asks for a login (is the session valid?)");
  const back = new URL(location, baseURL);
  if (!location.startsWith(redirect)) throw new Error(`authorize: redirected to ${location}`);
  if (back.searchParams.get("error")) throw new Error(`authorize: ${back.searchParams.get("error")}: ${back.searchParams.get("error_description")}`);
  if (back.searchParams.get("state") !== state_) throw new Error(`authorize: state ${back.searchParams.get("state")} != ${state_}`);
  return { code: back.searchParams.get("code"), verifier, redirect, consent, iss: back.searchParams.get("iss") };
}

// rowOut turns a row into JSON as stored: Dates as ISO strings.
const rowOut = (row) => row && Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]));

const servers = [];
const consents = [];
async function serve(c) {
  const fixed = new URL(baseURL);
  const port = c.port ?? Number(fixed.port || 80);
  const session = c.session;
  const grants = [...(c.grants ?? [])];
  const server = createServer(async (req, res) => {
    try {
      const origin = `http://${req.headers.host}`;
      const u = new URL(req.url, origin);
      if (session && req.method === "GET" && u.pathname === "/consent") {
        const granted = grants.shift() ?? undefined;
        const r = await call("POST", "/oauth2/consent", {
          headers: cookieOf(session), json: { accept: true, oauth_query: u.search.slice(1), scope: granted },
        });
        const requested = u.searchParams.get("scope");
        consents.push({ client_id: u.searchParams.get("client_id"), requested, granted: granted ?? requested, status: r.status });
        const to = r.body?.url ?? r.body?.redirect_uri;
        res.writeHead(to ? 302 : r.status, to ? { location: to } : { "content-type": "application/json" });
        res.end(to ? "" : JSON.stringify(r.body));
        return;
      }
      if (u.pathname === "/login" || u.pathname === "/consent") {
        res.writeHead(401, { "content-type": "text/plain" });
        res.end("no login page: serve was started without a session\n");
        return;
      }
      const chunks = [];
      for await (const ch of req) chunks.push(ch);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) for (const x of [v].flat()) headers.append(k, x);
      if (session && u.pathname === basePath + "/oauth2/authorize" && !headers.has("cookie")) {
        headers.set("cookie", cookieOf(session).cookie);
      }
      const body = chunks.length && req.method !== "GET" && req.method !== "HEAD" ? Buffer.concat(chunks) : undefined;
      const r = await auth.handler(new Request(u, { method: req.method, headers, body, redirect: "manual" }));
      const out = {};
      r.headers.forEach((v, k) => {
        if (k !== "set-cookie") out[k] = v;
      });
      const setCookies = r.headers.getSetCookie?.() ?? [];
      if (setCookies.length) out["set-cookie"] = setCookies;
      res.writeHead(r.status, out);
      res.end(Buffer.from(await r.arrayBuffer()));
    } catch (e) {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(e?.stack ?? e));
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  servers.push(server);
  const served = `http://127.0.0.1:${server.address().port}`;
  return { url: served, issuer, jwksURL: issuer + "/jwks", issuerMatches: new URL(served).origin === fixed.origin };
}

const ops = {
  async setup() {
    await (await getMigrations(auth.options)).runMigrations();
    const alice = await signUp("alice@example.com", "Alice");
    const bob = await signUp("bob@example.com", "Bob");
    state.users = { alice, bob };
    const headers = bearerOf(alice.signed);
    try {
      await auth.api.adminGetOAuthResource({ params: { identifier: resource }, headers });
    } catch {
      await auth.api.adminCreateOAuthResource({ body: { identifier: resource, name: "MCP server" }, headers });
    }
    const client = await createClient({ session: alice.signed });
    state.client = client;
    return {
      users: state.users, client, resource, issuer: tokenIssuer, baseURL, jwksURL: issuer + "/jwks",
      database: sqlitePath ? "sqlite" : mysql ? "mysql" : "postgres",
    };
  },
  "create-client": (c) => createClient(c),
  async "create-resource"(c) {
    const headers = bearerOf(sessionOf(c));
    await auth.api.adminCreateOAuthResource({ body: { identifier: c.identifier, name: c.name ?? c.identifier }, headers });
    if (c.client_id) await auth.api.adminLinkClientResource({ params: { identifier: c.identifier, client_id: c.client_id }, headers });
    return { identifier: c.identifier };
  },
  async "token-cc"(c) {
    const a = clientAuth(c);
    return withStatus(await call("POST", "/oauth2/token", {
      headers: a.headers,
      form: { ...a.form, grant_type: "client_credentials", scope: c.scope, resource: c.resource },
    }));
  },
  async "token-code"(c) {
    const z = await authorize(c);
    const a = clientAuth(c);
    const r = await call("POST", "/oauth2/token", {
      headers: a.headers,
      form: { ...a.form, grant_type: "authorization_code", code: z.code, code_verifier: z.verifier, redirect_uri: z.redirect, resource: c.resource },
    });
    return { ...withStatus(r), consent: z.consent, code: z.code };
  },
  async refresh(c) {
    const a = clientAuth(c);
    return withStatus(await call("POST", "/oauth2/token", {
      headers: a.headers,
      form: { ...a.form, grant_type: "refresh_token", refresh_token: c.refresh_token, scope: c.scope, resource: c.resource },
    }));
  },
  async revoke(c) {
    const a = clientAuth(c);
    const r = await call("POST", "/oauth2/revoke", { headers: a.headers, form: { ...a.form, token: c.token, token_type_hint: c.token_type_hint } });
    return { status: r.status, body: r.body };
  },
  async introspect(c) {
    const a = clientAuth(c);
    const r = await call("POST", "/oauth2/introspect", { headers: a.headers, form: { ...a.form, token: c.token, token_type_hint: c.token_type_hint } });
    return { status: r.status, body: r.body };
  },
  "disable-client": (c) => setDisabled(c.client_id, true),
  "enable-client": (c) => setDisabled(c.client_id, false),
  async "sign-out"(c) {
    const r = await auth.api.signOut({ headers: bearerOf(sessionOf(c)) });
    return { success: r?.success === true };
  },
  async "delete-resource"(c) {
    return await auth.api.adminDeleteOAuthResource({ params: { identifier: c.identifier ?? resource }, headers: bearerOf(sessionOf(c)) });
  },
  async "age-token"(c) {
    const h = hash(c.token);
    const at = new Date(Date.now() - (c.ms ?? 60_000));
    const n = await ctx.adapter.updateMany({ model: "oauthAccessToken", where: [{ field: "token", value: h }], update: { expiresAt: at } });
    return { updated: n, expiresAt: at.toISOString() };
  },
  async "session-jwt"(c) {
    const r = await call("GET", "/token", { headers: bearerOf(sessionOf(c)) });
    return { status: r.status, token: r.body?.token ?? null, body: r.body };
  },
  async jwks() {
    const rows = await sql(`SELECT * FROM "jwks" ORDER BY "createdAt"`);
    const served = await call("GET", "/jwks");
    return {
      rows: rows.map((r) => ({
        id: r.id, publicKey: JSON.parse(r.publicKey), alg: r.alg ?? null, crv: r.crv ?? null,
        createdAt: rowOut({ d: r.createdAt }).d, expiresAt: rowOut({ d: r.expiresAt }).d ?? null,
      })),
      served: served.body, url: issuer + "/jwks",
    };
  },
  async row(c) {
    const h = hash(c.token);
    const [row] = await sql(`SELECT * FROM "oauthAccessToken" WHERE "token" = ?`, [h]);
    return { hash: h, row: rowOut(row) ?? null };
  },
  async "refresh-row"(c) {
    const h = hash(c.token);
    const [row] = await sql(`SELECT * FROM "oauthRefreshToken" WHERE "token" = ?`, [h]);
    return { hash: h, row: rowOut(row) ?? null };
  },
  async "client-row"(c) {
    const [row] = await sql(`SELECT * FROM "oauthClient" WHERE "clientId" = ?`, [c.client_id]);
    return { row: rowOut(row) ?? null };
  },
  async sql(c) {
    return { rows: (await sql(c.query, c.params ?? [])).map(rowOut) };
  },
  async ddl() {
    return { sql: await (await getMigrations(auth.options)).compileMigrations() };
  },
  serve,
  consents: () => ({ consents }),
};

async function setDisabled(clientId, disabled) {
  const row = await ctx.adapter.update({
    model: "oauthClient",
    where: [{ field: "clientId", value: clientId }],
    update: { disabled, updatedAt: new Date() },
  });
  if (!row) throw new Error(`no client ${clientId}`);
  return { client_id: clientId, disabled: row.disabled };
}

const errorText = (e) => {
  if (e?.body && typeof e.body === "object") {
    const b = e.body;
    return [e.status ?? e.statusCode, b.error ?? b.code, b.error_description ?? b.message].filter(Boolean).join(": ");
  }
  if (e?.status) return [e.status, e.message].filter(Boolean).join(": ");
  return String(e?.message ?? e);
};

const [cmd] = process.argv.slice(2);
if (cmd !== "shell") {
  console.error("usage: node oauth.mjs shell");
  process.exit(2);
}
const readline = (await import("node:readline")).createInterface({ input: process.stdin });
for await (const line of readline) {
  if (!line.trim()) continue;
  let out;
  try {
    const c = JSON.parse(line);
    const f = ops[c.op];
    if (!f) throw new Error(`unknown op ${c.op}`);
    out = (await f(c)) ?? {};
  } catch (e) {
    out = { error: errorText(e) };
    if (process.env.OAUTH_DEBUG === "1") console.error(e, e?.stack);
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
for (const s of servers) s.close();
if (sqlitePath) db.close();
else await db.end();
