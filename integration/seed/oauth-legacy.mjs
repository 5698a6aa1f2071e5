// Drives the legacy OAuth provider of better-auth ≤1.5, the mcp() plugin
// (built on oidcProvider()), from better-auth 1.4.22 installed under the npm
// alias better-auth-legacy (see package.json): it stored access and refresh
// tokens in plaintext in "oauthAccessToken" (accessToken, refreshToken,
// accessTokenExpiresAt, refreshTokenExpiresAt, clientId, userId, scopes as a
// space-separated string) and clients in "oauthApplication". Its schema
// conflicts with the current provider's tables of the same name: use a
// database of its own. Usage:
//
//   node oauth-legacy.mjs shell   one JSON command per stdin line, one JSON line each
//
// Environment: DATABASE_URL (PostgreSQL URL or sqlite:<path>),
// BETTER_AUTH_SECRET, BASE_URL (default http://localhost:3000; basePath
// /api/auth), OAUTH_DEBUG=1 keeps Better-Auth's logger on.
//
// The app: betterAuth({ emailAndPassword, plugins: [bearer(), mcp({
// loginPage: "/login" })] }), all from better-auth 1.4.22. The legacy plugin
// has no client_credentials grant: tokens come from the code flow only.
// Failures answer {"error": "..."}; "session" arguments are signed session
// tokens and default to Alice's from setup.
//
//   {"op":"setup"}
//       runs 1.4.22's migrations, signs up alice@example.com and
//       bob@example.com, registers a confidential client through
//       POST /mcp/register as Alice (redirect URI http://127.0.0.1:9/callback)
//       → {"users": {"alice": U, "bob": U}, "client": C, "issuer", "baseURL", "database"}
//         U = {"id","email","name","signed","token","sessionId"}; "signed" is
//         set-auth-token as 1.4.22 sends it: URL-encoded ("%2B", "%3D")
//         C = the registration answer (client_id, client_secret, ...)
//   {"op":"register", "public"?: bool, "name"?, "redirect_uris"?: [...], "session"?}
//       another client through POST /mcp/register → C
//   {"op":"token-code", "client_id", "client_secret"?, "scope"?, "session"?}
//       GET /mcp/authorize (PKCE S256, session cookie; the plugin gives the
//       code at once, without consent), then POST /mcp/token
//       → the token response plus "status" (scope default "openid offline_access")
//   {"op":"refresh", "client_id", "client_secret"?, "refresh_token"}
//       POST /mcp/token grant_type=refresh_token → the token response plus "status"
//       (the plugin adds a new row and leaves the old one as it was)
//   {"op":"mcp-session", "token"}
//       auth.api.getMcpSession with "Authorization: Bearer <token>", what the
//       legacy withMcpAuth checks → {"session": the row it finds, or null}
//   {"op":"row", "token"}          → {"row": the oauthAccessToken row whose accessToken is token, or null}
//   {"op":"age-token", "token", "ms"?}
//       moves that row's accessTokenExpiresAt to now − ms (default 60000)
//       → {"updated": n, "accessTokenExpiresAt"}
//   {"op":"disable-client", "client_id"} / {"op":"enable-client", "client_id"}
//       oauthApplication.disabled through Better-Auth's adapter → {"client_id","disabled"}
//   {"op":"sign-out", "session"}  → {"success": true}
//   {"op":"client-row", "client_id"} → {"row": the oauthApplication row}
//   {"op":"sql", "query", "params"?} → {"rows": [...]}
//   {"op":"ddl"} → {"sql": 1.4.22's migration SQL for this database}
process.env.TZ = "UTC";

import { createHash, randomBytes } from "node:crypto";
import { betterAuth } from "better-auth-legacy";
import { bearer, mcp } from "better-auth-legacy/plugins";
import { getMigrations } from "better-auth-legacy/db";
import pg from "pg";

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL is not set");
const sqlitePath = url.startsWith("sqlite:") ? url.slice("sqlite:".length).replace(/^\/\//, "") : null;
const Database = sqlitePath ? (await import("better-sqlite3")).default : null;
const db = sqlitePath ? new Database(sqlitePath) : new pg.Pool({ connectionString: url });
async function sql(text, params = []) {
  if (sqlitePath) {
    const st = db.prepare(text);
    return st.reader ? st.all(...params) : (st.run(...params), []);
  }
  let i = 0;
  return (await db.query(text.replace(/\?/g, () => `$${++i}`), params)).rows;
}

const baseURL = (process.env.BASE_URL ?? "http://localhost:3000").replace(/\/+$/, "");
const basePath = "/api/auth";
const redirectURI = "http://127.0.0.1:9/callback";

const auth = betterAuth({
  secret: process.env.BETTER_AUTH_SECRET,
  baseURL,
  database: db,
  logger: { disabled: process.env.OAUTH_DEBUG !== "1" },
  emailAndPassword: { enabled: true },
  plugins: [bearer(), mcp({ loginPage: "/login" })],
});
const ctx = await auth.$context;

async function call(method, path, { headers = {}, form, json, query } = {}) {
  const u = new URL(baseURL + basePath + path);
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) u.searchParams.append(k, v);
  const h = new Headers(headers);
  let body;
  if (form) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) if (v !== undefined && v !== null) p.append(k, v);
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

const cookieName = ctx.authCookies.sessionToken.name;
// 1.4.22's set-auth-token is already URL-encoded ("%2B", "%3D"), unlike 1.7.5's.
const cookieOf = (signed) => ({ cookie: `${cookieName}=${encodeURIComponent(decodeURIComponent(signed))}`, origin: new URL(baseURL).origin });
const bearerOf = (signed) => new Headers({ authorization: `Bearer ${signed}` });
const withStatus = (r) => (r.body && typeof r.body === "object" && !Array.isArray(r.body) ? { ...r.body, status: r.status } : { status: r.status, body: r.body });
const rowOut = (row) => row && Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]));

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

async function register(c) {
  const r = await call("POST", "/mcp/register", {
    headers: bearerOf(sessionOf(c)),
    json: {
      client_name: c.name ?? (c.public ? "legacy public client" : "legacy client"),
      redirect_uris: c.redirect_uris ?? [redirectURI],
      token_endpoint_auth_method: c.public ? "none" : "client_secret_basic",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    },
  });
  if (r.status !== 201) throw new Error(`register: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const ops = {
  async setup() {
    await (await getMigrations(auth.options)).runMigrations();
    const alice = await signUp("alice@example.com", "Alice");
    const bob = await signUp("bob@example.com", "Bob");
    state.users = { alice, bob };
    const client = await register({ session: alice.signed });
    return { users: state.users, client, issuer: baseURL + basePath, baseURL, database: sqlitePath ? "sqlite" : "postgres" };
  },
  register,
  async "token-code"(c) {
    const verifier = randomBytes(32).toString("base64url");
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    const st = randomBytes(8).toString("hex");
    const a = await call("GET", "/mcp/authorize", {
      headers: cookieOf(sessionOf(c)),
      query: {
        response_type: "code", client_id: c.client_id, redirect_uri: redirectURI, scope: c.scope ?? "openid offline_access",
        state: st, code_challenge: challenge, code_challenge_method: "S256",
      },
    });
    const location = a.headers.get("location");
    if (!location || !location.startsWith(redirectURI)) throw new Error(`authorize: ${a.status} ${location ?? JSON.stringify(a.body)}`);
    const back = new URL(location);
    if (back.searchParams.get("error")) throw new Error(`authorize: ${back.searchParams.get("error")}: ${back.searchParams.get("error_description")}`);
    const r = await call("POST", "/mcp/token", {
      form: {
        grant_type: "authorization_code", code: back.searchParams.get("code"), redirect_uri: redirectURI,
        code_verifier: verifier, client_id: c.client_id, client_secret: c.client_secret,
      },
    });
    return withStatus(r);
  },
  async refresh(c) {
    return withStatus(await call("POST", "/mcp/token", {
      form: { grant_type: "refresh_token", refresh_token: c.refresh_token, client_id: c.client_id, client_secret: c.client_secret },
    }));
  },
  async "mcp-session"(c) {
    const s = await auth.api.getMcpSession({ headers: new Headers({ authorization: `Bearer ${c.token}` }) });
    return { session: rowOut(s) ?? null };
  },
  async row(c) {
    const [row] = await sql(`SELECT * FROM "oauthAccessToken" WHERE "accessToken" = ?`, [c.token]);
    return { row: rowOut(row) ?? null };
  },
  async "age-token"(c) {
    const at = new Date(Date.now() - (c.ms ?? 60_000));
    const n = await ctx.adapter.updateMany({ model: "oauthAccessToken", where: [{ field: "accessToken", value: c.token }], update: { accessTokenExpiresAt: at } });
    return { updated: n, accessTokenExpiresAt: at.toISOString() };
  },
  "disable-client": (c) => setDisabled(c.client_id, true),
  "enable-client": (c) => setDisabled(c.client_id, false),
  async "sign-out"(c) {
    const r = await auth.api.signOut({ headers: bearerOf(sessionOf(c)) });
    return { success: r?.success === true };
  },
  async "client-row"(c) {
    const [row] = await sql(`SELECT * FROM "oauthApplication" WHERE "clientId" = ?`, [c.client_id]);
    return { row: rowOut(row) ?? null };
  },
  async sql(c) {
    return { rows: (await sql(c.query, c.params ?? [])).map(rowOut) };
  },
  async ddl() {
    return { sql: await (await getMigrations(auth.options)).compileMigrations() };
  },
};

async function setDisabled(clientId, disabled) {
  const row = await ctx.adapter.update({
    model: "oauthApplication",
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
  console.error("usage: node oauth-legacy.mjs shell");
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
    if (process.env.OAUTH_DEBUG === "1") console.error(e);
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
if (sqlitePath) db.close();
else await db.end();
