// The peer scripts/bench.sh compares the gateway with: what users deploy
// today in front of Caddy's forward_auth, a Node HTTP endpoint that asks
// real Better-Auth (versions pinned in package-lock.json) about each
// request's X-Api-Key with the api-key plugin's verifyApiKey. Same secret,
// database and plugins as seed.mjs's default setup. With DATABASE_URL (a
// PostgreSQL URL) and BETTER_AUTH_SECRET set:
//
//   node verify-server.mjs keys <n>     signs up bench@example.com and prints
//                                       n new API keys, one a line (no rate
//                                       limit, so that verifies never run out)
//   node verify-server.mjs serve <port> answers GET /verify on 127.0.0.1:<port>:
//                                       200 with X-Auth-User-Id, X-Auth-Key-Id
//                                       and X-Auth-Method, or 401
//
// The endpoint returns only what verifyApiKey gives (the key's owner and
// id): a second query for the user's email, name and role, which the
// gateway's headers carry, would make it slower still.
import http from "node:http";
import { betterAuth } from "better-auth";
import { admin, bearer } from "better-auth/plugins";
import { apiKey } from "@better-auth/api-key";
import pg from "pg";

const db = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const auth = betterAuth({
  secret: process.env.BETTER_AUTH_SECRET,
  baseURL: "http://localhost:3000",
  database: db,
  logger: { disabled: true },
  emailAndPassword: { enabled: true },
  plugins: [bearer(), apiKey({ enableMetadata: true }), admin()],
});

const [cmd, arg] = process.argv.slice(2);
switch (cmd) {
  case "keys": {
    const n = Number(arg);
    const res = await auth.api.signUpEmail({ body: { email: "bench@example.com", password: "password1234", name: "Bench" } });
    const userId = res.user.id;
    const keys = [];
    // A few at a time: the pool has ten connections.
    for (let i = 0; i < n; i += 10) {
      const batch = Array.from({ length: Math.min(10, n - i) }, () =>
        auth.api.createApiKey({ body: { userId, name: "bench", prefix: "ba_", rateLimitEnabled: false } }));
      for (const k of await Promise.all(batch)) keys.push(k.key);
    }
    process.stdout.write(keys.join("\n") + "\n");
    await db.end();
    break;
  }
  case "serve": {
    const server = http.createServer(async (req, res) => {
      try {
        const key = req.headers["x-api-key"];
        const r = typeof key === "string" ? await auth.api.verifyApiKey({ body: { key } }) : { valid: false };
        if (!r.valid) {
          res.writeHead(401).end();
          return;
        }
        res.writeHead(200, {
          "X-Auth-User-Id": r.key.referenceId ?? r.key.userId,
          "X-Auth-Key-Id": r.key.id,
          "X-Auth-Method": "api_key",
        }).end();
      } catch {
        res.writeHead(503).end();
      }
    });
    server.keepAliveTimeout = 60_000;
    server.listen(Number(arg), "127.0.0.1", () => console.log(`listening on 127.0.0.1:${arg}`));
    break;
  }
  default:
    console.error("usage: node verify-server.mjs keys <n> | serve <port>");
    process.exit(2);
}
