// Issues real JWT access tokens with better-auth 1.7.5 and @better-auth/oauth-provider
// 1.7.5 (client_credentials and authorization_code), plus a session JWT signed with the
// same key, and prints them with the jwks rows (private keys left out) and the /jwks
// document. betterauth-1.7.5.json holds its output for each algorithm:
//
//   npm i --legacy-peer-deps better-auth@1.7.5 @better-auth/oauth-provider@1.7.5 better-sqlite3@12.11.1
//   for a in EdDSA ES256 ES512 RS256 PS256; do node issue.mjs $a > $a.json; done
import { betterAuth } from "better-auth";
import { jwt } from "better-auth/plugins";
import { oauthProvider } from "@better-auth/oauth-provider";
import { getMigrations } from "better-auth/db/migration";
import Database from "better-sqlite3";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const alg = process.argv[2] ?? "EdDSA";
const file = path.join(os.tmpdir(), `issue-${alg}.db`);
fs.rmSync(file, { force: true });
const db = new Database(file);
const baseURL = "http://localhost:3000";
const resource = "https://mcp.example.com/mcp";
const keyPairConfig = { EdDSA: { alg: "EdDSA", crv: "Ed25519" }, ES256: { alg: "ES256" }, ES512: { alg: "ES512" }, RS256: { alg: "RS256" }, PS256: { alg: "PS256" } }[alg];
const auth = betterAuth({
  secret: "integration-secret-0123456789abcdefghijklmnopqrstuvwxyz",
  baseURL,
  database: db,
  emailAndPassword: { enabled: true },
  disabledPaths: ["/token"],
  plugins: [
    jwt({ jwks: { keyPairConfig } }),
    oauthProvider({
      loginPage: "/login", consentPage: "/consent",
      resources: [resource],
      enforcePerClientResources: false, clientPrivileges: async () => true,
      scopes: ["openid", "profile", "email", "offline_access", "mcp:read"],
      silenceWarnings: { oauthAuthServerConfig: true, openidConfig: true },
    }),
  ],
});
await (await getMigrations(auth.options)).runMigrations();

const h = (path, init = {}) => auth.handler(new Request(baseURL + "/api/auth" + path, init));
const su = await auth.api.signUpEmail({ body: { email: "alice@example.com", password: "password1234", name: "Alice" }, asResponse: true });
const cookie = su.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
const { user } = await su.json();

const client = await auth.api.adminCreateOAuthClient({ headers: new Headers({ cookie }), body: {
  client_name: "m2m", grant_types: ["client_credentials", "authorization_code"], response_types: ["code"],
  redirect_uris: ["https://app.example.com/cb"], token_endpoint_auth_method: "client_secret_post",
  skip_consent: true, scope: "openid profile mcp:read", client_credentials_scopes: ["mcp:read"],
} });
const form = (o) => ({ method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(o).toString() });
let r = await h("/oauth2/token", form({ grant_type: "client_credentials", client_id: client.client_id, client_secret: client.client_secret, scope: "mcp:read", resource }));
const m2m = await r.json();
if (!m2m.access_token) throw new Error("m2m: " + JSON.stringify(m2m));

// authorization_code with PKCE, the user signed in
const verifier = randomBytes(32).toString("base64url");
const challenge = createHash("sha256").update(verifier).digest("base64url");
const q = new URLSearchParams({ response_type: "code", client_id: client.client_id, redirect_uri: "https://app.example.com/cb",
  scope: "openid mcp:read", state: "s1", code_challenge: challenge, code_challenge_method: "S256", resource });
r = await h("/oauth2/authorize?" + q, { headers: { cookie }, redirect: "manual" });
let loc = r.headers.get("location");
if (!loc) { const j = await r.json().catch(() => ({})); loc = j.url ?? j.redirect_uri ?? j.uri; if (!loc) throw new Error("authorize: " + r.status + JSON.stringify(j)); }
const code = new URL(loc).searchParams.get("code");
if (!code) throw new Error("no code in " + loc);
r = await h("/oauth2/token", form({ grant_type: "authorization_code", code, redirect_uri: "https://app.example.com/cb", client_id: client.client_id, client_secret: client.client_secret, code_verifier: verifier, resource }));
const ut = await r.json();
if (!ut.access_token) throw new Error("user token: " + JSON.stringify(ut));

// a session JWT (same keys, no typ, no azp)
const sess = await auth.api.signJWT({ body: { payload: { sub: user.id } } }).catch((e) => ({ error: String(e) }));

const jwks = await (await h("/jwks")).json();
const rows = db.prepare("SELECT * FROM jwks").all().map(({ privateKey, ...rest }) => rest);
const ddl = db.prepare("SELECT sql FROM sqlite_master WHERE name = 'jwks'").get().sql;
const intro = await (await h("/oauth2/introspect", form({ token: m2m.access_token, client_id: client.client_id, client_secret: client.client_secret }))).json();
console.log(JSON.stringify({ alg, issuer: baseURL + "/api/auth", resource, clientId: client.client_id, userId: user.id,
  m2mToken: m2m.access_token, userToken: ut.access_token, sessionJWT: sess.token ?? sess, jwks, rows, ddl, introspection: intro }, null, 1));
