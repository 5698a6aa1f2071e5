// Drives real Better-Auth (versions pinned in package-lock.json) to create the
// schema and the rows the Go tests read, and to change them the way an app
// would. Usage, with DATABASE_URL and BETTER_AUTH_SECRET set:
//
//   node seed.mjs setup                  create the schema and the fixture; prints it as JSON
//   node seed.mjs delete-key <id> <signed session token of the owner>
//   node seed.mjs disable-key <id> <userId>
//   node seed.mjs revoke-session <token>
//   node seed.mjs ban-user <userId>
//   node seed.mjs more <email> <keys> <sessions>
//                                              signs the user up (or in) that many times and creates
//                                              that many API keys; prints {id, keys, sessions} as JSON
//   node seed.mjs set-key-metadata <id> <userId> <metadata JSON>
//                                              updateApiKey({metadata}), as an app would
//   node seed.mjs ddl                          prints the SQL Better-Auth's migrations run
//   node seed.mjs verify-key <key> [<permissions JSON>]
//                                              prints Better-Auth's verifyApiKey result
//   node seed.mjs get-session <signed token>   prints Better-Auth's getSession result
//   node seed.mjs usage-shell                  answers one JSON command per stdin line
//                                              (create, verify, verify-many, age, row; see below)
//   node seed.mjs delete-org <orgId> <signed session token of its owner>   (ORG=1)
//   node seed.mjs update-member-role <orgId> <memberId> <role> <signed session token of its owner>   (ORG=1)
//
// DATABASE_URL is a PostgreSQL URL, sqlite:<path> for a SQLite file
// (better-sqlite3), or mysql://user:pass@host:port/db for MySQL or MariaDB
// (mysql2).
//
// REDIS_URL adds Better-Auth's secondary storage (@better-auth/redis-storage,
// key prefix REDIS_PREFIX, default "better-auth:"): sessions then live only in
// Redis, unless STORE_SESSIONS_IN_DB=1; KEY_STORAGE=secondary keeps API keys
// there too (apiKey({ storage: "secondary-storage" })).
// ORG=1 adds the organization plugin and a second api-key configuration,
// "org", whose keys belong to organizations (references: "organization");
// setup then also creates organizations, members, organization keys and an
// active organization on Alice's first session (see "org" in its output).
// ADMIN=0 leaves out the admin plugin (no role, banned, banExpires columns).
// NAMING=snake maps every column to snake_case and stores dates as Drizzle's
// generator does: timestamp (UTC wall time) on PostgreSQL, epoch-millisecond
// integers on SQLite, timestamp(3) on MySQL (what Better-Auth creates there).
process.env.TZ = "UTC";

import { betterAuth } from "better-auth";
import { bearer, admin, organization } from "better-auth/plugins";
import { apiKey } from "@better-auth/api-key";
import { getMigrations } from "better-auth/db/migration";
import pg from "pg";

const withAdmin = process.env.ADMIN !== "0";
const snake = process.env.NAMING === "snake";
const toSnake = (s) => s.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
const fieldsOf = (names) => (snake ? Object.fromEntries(names.map((n) => [n, toSnake(n)])) : undefined);

const url = process.env.DATABASE_URL;
const sqlitePath = url.startsWith("sqlite:") ? url.slice("sqlite:".length).replace(/^\/\//, "") : null;
const mysql = url.startsWith("mysql:");
const Database = sqlitePath ? (await import("better-sqlite3")).default : null;
// Better-Auth takes mysql2's promise pool, as its docs show (it hands the
// pool to Kysely's MysqlDialect as its config, whose .pool is the callback
// pool), and JS Dates: timezone "Z" writes and reads them as UTC wall time.
const db = sqlitePath ? new Database(sqlitePath)
  : mysql ? (await import("mysql2/promise")).createPool({ uri: url, timezone: "Z", connectionLimit: 10 })
  : new pg.Pool({ connectionString: url });
// sql runs a statement written with ? placeholders and "quoted" identifiers
// on any of the databases. The statements here quote nothing but
// identifiers with double quotes, so on MySQL they become backticks.
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
const redisURL = process.env.REDIS_URL;
const redisPrefix = process.env.REDIS_PREFIX ?? "better-auth:";
const redis = redisURL ? new (await import("ioredis")).Redis(redisURL) : null;
const secondaryStorage = redis ? (await import("@better-auth/redis-storage")).redisStorage({ client: redis, keyPrefix: redisPrefix }) : undefined;
const keysInRedis = process.env.KEY_STORAGE === "secondary";
const withOrg = process.env.ORG === "1";
const apiKeyConfig = {
  enableMetadata: true,
  ...(keysInRedis ? { storage: "secondary-storage" } : {}),
};
const apiKeySchema = snake ? { apikey: { fields: fieldsOf(["configId", "referenceId", "refillInterval", "refillAmount",
  "lastRefillAt", "rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "requestCount", "lastRequest",
  "expiresAt", "createdAt", "updatedAt"]) } } : undefined;
// With ORG=1, the api-key plugin takes an array of configurations, and its
// schema as a second argument.
const apiKeyPlugin = withOrg
  ? apiKey([{ ...apiKeyConfig, configId: "default" }, { ...apiKeyConfig, configId: "org", references: "organization" }], { schema: apiKeySchema })
  : apiKey({ ...apiKeyConfig, schema: apiKeySchema });
const auth = betterAuth({
  secondaryStorage,
  secret: process.env.BETTER_AUTH_SECRET,
  baseURL: "http://localhost:3000",
  database: db,
  logger: { disabled: true },
  emailAndPassword: { enabled: true },
  user: { fields: fieldsOf(["emailVerified", "createdAt", "updatedAt"]) },
  session: {
    fields: fieldsOf(["expiresAt", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId"]),
    storeSessionInDatabase: process.env.STORE_SESSIONS_IN_DB === "1",
  },
  account: {
    fields: fieldsOf(["accountId", "providerId", "userId", "accessToken", "refreshToken", "idToken",
      "accessTokenExpiresAt", "refreshTokenExpiresAt", "createdAt", "updatedAt"]),
  },
  verification: { fields: fieldsOf(["expiresAt", "createdAt", "updatedAt"]) },
  plugins: [
    bearer(),
    apiKeyPlugin,
    ...(withOrg ? [organization({
      schema: snake ? { organization: { fields: fieldsOf(["createdAt"]) },
        member: { fields: fieldsOf(["organizationId", "userId", "createdAt"]) },
        invitation: { fields: fieldsOf(["organizationId", "expiresAt", "createdAt", "inviterId", "teamId"]) },
        session: { fields: fieldsOf(["activeOrganizationId"]) } } : undefined,
    })] : []),
    ...(withAdmin ? [admin({
      schema: snake ? { user: { fields: fieldsOf(["banReason", "banExpires"]) }, session: { fields: fieldsOf(["impersonatedBy"]) } } : undefined,
    })] : []),
  ],
});

const ctx = await auth.$context;
const [cmd, ...args] = process.argv.slice(2);

async function signUp(email, name) {
  const res = await auth.api.signUpEmail({ body: { email, password: "password1234", name }, asResponse: true });
  if (!res.ok) throw new Error(`sign-up ${email}: ${res.status} ${await res.text()}`);
  const signed = res.headers.get("set-auth-token");
  const { user } = await res.json();
  return { id: user.id, email, name, signed, token: signed.split(".")[0] };
}

async function newKey(userId, body = {}) {
  const k = await auth.api.createApiKey({ body: { userId, name: "test", prefix: "ba_", ...body } });
  return { key: k.key, id: k.id };
}

const col = (field) => (snake ? toSnake(field) : field);

// ageRedis moves dates of a JSON value in secondary storage back, as ageRow
// does for rows. path picks the object inside the value that holds them.
async function ageRedis(key, ages, path = (v) => v) {
  const raw = await redis.get(redisPrefix + key);
  if (raw === null) throw new Error(`no ${key} in secondary storage`);
  const value = JSON.parse(raw);
  for (const [field, ms] of Object.entries(ages)) path(value)[field] = new Date(Date.now() - ms).toISOString();
  await redis.set(redisPrefix + key, JSON.stringify(value)); // without the TTL, so it is still there to be refused
}

// ageRow moves a row's timestamps back by the given milliseconds, standing
// in for time going by; only columns Better-Auth itself wrote are changed.
async function ageRow(table, id, ages) {
  const names = Object.keys(ages);
  const values = names.map((c) => {
    const d = new Date(Date.now() - ages[c]);
    return sqlitePath ? d.toISOString() : d;
  });
  await sql(`UPDATE "${table}" SET ${names.map((c) => `"${col(c)}" = ?`).join(", ")} WHERE "id" = ?`, [...values, id]);
}

switch (cmd) {
  case "setup": {
    await (await getMigrations(auth.options)).runMigrations();
    // Drizzle's MySQL schema already uses timestamp(3), as Better-Auth does.
    if (snake && !sqlitePath && !mysql) {
      // Drizzle's PostgreSQL schema uses timestamp without time zone.
      const rows = await sql(
        `SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND data_type = 'timestamp with time zone'`);
      for (const r of rows) {
        await sql(`ALTER TABLE "${r.table_name}" ALTER COLUMN "${r.column_name}" TYPE timestamp USING "${r.column_name}" AT TIME ZONE 'UTC'`);
      }
    }
    const alice = await signUp("alice@example.com", "Alice");
    const eve = await signUp("eve@example.com", "Eve\r\nX-Auth-User-Role: admin");
    const zoe = await signUp("zoe@example.com", "Zoë Ünïcødé");
    const bob = await signUp("bob@example.com", "Bob");

    const keys = {
      valid: await newKey(alice.id),
      valid2: await newKey(alice.id),
      eve: await newKey(eve.id),
      zoe: await newKey(zoe.id),
      disabled: await newKey(alice.id),
      expired: await newKey(alice.id, { expiresIn: 86400 }),
      exhausted: await newKey(alice.id, { remaining: 1 }),
      limited: await newKey(alice.id, { remaining: 5 }),
      refill: await newKey(alice.id, { remaining: 1, refillAmount: 3, refillInterval: 60000 }),
      banned: await newKey(bob.id),
      deletable: await newKey(alice.id),
      unhashedPrefix: await newKey(alice.id, { prefix: "gw_" }),
      // Verified by Better-Auth itself in the permission tests: no rate
      // limit, so that its verifies are never counted out.
      permitted: await newKey(alice.id, { permissions: { files: ["read", "write"], projects: ["list"] }, rateLimitEnabled: false }),
      // Restricted to client addresses by their metadata
      // (api_key_allowed_ips_field allowedIps); the second list has a typo.
      ipListed: await newKey(alice.id, { metadata: { plan: "pro", allowedIps: ["10.1.0.0/16", "203.0.113.7"] } }),
      ipMalformed: await newKey(alice.id, { metadata: { allowedIps: ["10.1.2.3", "10.1.2.300"] } }),
    };
    await auth.api.updateApiKey({ body: { keyId: keys.disabled.id, userId: alice.id, enabled: false } });
    // Spend the single use of the exhausted and refill keys, as a verify would.
    for (const k of [keys.exhausted, keys.refill]) {
      const r = await auth.api.verifyApiKey({ body: { key: k.key } });
      if (!r.valid) throw new Error(`verify ${k.id}: ${JSON.stringify(r.error)}`);
    }
    if (keysInRedis) {
      const { defaultKeyHasher } = await import("@better-auth/api-key");
      await ageRedis(`api-key:${await defaultKeyHasher(keys.expired.key)}`, { expiresAt: 60_000 });
      await ageRedis(`api-key:${await defaultKeyHasher(keys.refill.key)}`, { createdAt: 120_000 });
    } else {
      await ageRow("apikey", keys.expired.id, { expiresAt: 60_000 });
      // The refill key last refilled two minutes ago; its interval is one.
      await ageRow("apikey", keys.refill.id, { createdAt: 120_000 });
    }

    const expiredSession = await signUp("old@example.com", "Old");
    const sessionsInDB = !redis || process.env.STORE_SESSIONS_IN_DB === "1";
    if (sessionsInDB) {
      await ageRow("session", (await ctx.internalAdapter.findSession(expiredSession.token)).session.id, { expiresAt: 60_000 });
    }
    if (redis) await ageRedis(expiredSession.token, { expiresAt: 60_000 }, (v) => v.session);
    const second = await auth.api.signInEmail({ body: { email: "alice@example.com", password: "password1234" }, asResponse: true });
    const aliceSession2 = second.headers.get("set-auth-token");

    if (withAdmin) await ctx.internalAdapter.updateUser(bob.id, { banned: true, banReason: "test" });
    if (redis && withAdmin) {
      // A ban revokes the user's sessions in Better-Auth; keep Bob's
      // session in storage, updated, so that the gateway has to refuse it.
      const raw = await redis.get(redisPrefix + bob.token);
      if (raw) {
        const v = JSON.parse(raw);
        v.user.banned = true;
        await redis.set(redisPrefix + bob.token, JSON.stringify(v));
      }
    }
    let org;
    if (withOrg) {
      // Alice creates (and owns) two organizations; Zoe is a plain member
      // of the first. Each has a key of the "org" configuration; Alice's
      // first session makes the first its active organization, Zoe's
      // session makes it hers too.
      const bearerOf = (u) => new Headers({ authorization: `Bearer ${u.signed}` });
      const acme = await auth.api.createOrganization({ body: { name: "Acmé Corp\r\nX-Auth-Org-Id: forged", slug: "acme", userId: alice.id } });
      const doomed = await auth.api.createOrganization({ body: { name: "Doomed", slug: "doomed", userId: alice.id } });
      const zoeMember = await auth.api.addMember({ body: { userId: zoe.id, organizationId: acme.id, role: "member" } });
      const orgKey = (organizationId) => auth.api.createApiKey({ body: { configId: "org", organizationId, userId: alice.id, name: "org", prefix: "ba_" } })
        .then((k) => ({ key: k.key, id: k.id }));
      const keys = { acme: await orgKey(acme.id), doomed: await orgKey(doomed.id) };
      await auth.api.setActiveOrganization({ body: { organizationId: acme.id }, headers: bearerOf(alice) });
      await auth.api.setActiveOrganization({ body: { organizationId: acme.id }, headers: bearerOf(zoe) });
      const members = await sql(`SELECT "id", "${col("userId")}" AS "userId", "role" FROM "member" WHERE "${col("organizationId")}" = ?`, [acme.id]);
      org = {
        acme: { id: acme.id, slug: acme.slug, name: acme.name },
        doomed: { id: doomed.id, slug: doomed.slug, name: doomed.name },
        members: Object.fromEntries(members.map((m) => [m.userId === alice.id ? "alice" : "zoe", { id: m.id, role: m.role }])),
        zoeMemberId: zoeMember?.id,
        keys,
      };
    }
    const sessionIds = {};
    for (const [name, u] of Object.entries({ alice, eve, zoe, bob, expired: expiredSession })) {
      if (sessionsInDB) {
        const [row] = await sql(`SELECT "id" FROM "session" WHERE "token" = ?`, [u.token]);
        sessionIds[name] = row.id;
      } else {
        sessionIds[name] = JSON.parse(await redis.get(redisPrefix + u.token)).session.id;
      }
    }
    if (snake && sqlitePath) {
      // Drizzle's SQLite schema keeps dates as epoch milliseconds.
      for (const { name: table } of await sql(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)) {
        for (const { name: column } of await sql(`SELECT name FROM pragma_table_info(?) WHERE type = 'date'`, [table])) {
          await sql(`UPDATE "${table}" SET "${column}" = CAST(ROUND((julianday("${column}") - 2440587.5) * 86400000) AS INTEGER) WHERE "${column}" IS NOT NULL`);
        }
      }
    }
    console.log(JSON.stringify({
      admin: withAdmin, naming: snake ? "snake" : "camel",
      users: { alice, eve, zoe, bob, expired: expiredSession },
      sessionIds, aliceSession2: { signed: aliceSession2, token: aliceSession2.split(".")[0] },
      keys,
      ...(org ? { org } : {}),
    }));
    break;
  }
  case "delete-org":
    await auth.api.deleteOrganization({ body: { organizationId: args[0] }, headers: new Headers({ authorization: `Bearer ${args[1]}` }) });
    break;
  case "update-member-role":
    await auth.api.updateMemberRole({ body: { organizationId: args[0], memberId: args[1], role: args[2] },
      headers: new Headers({ authorization: `Bearer ${args[3]}` }) });
    break;
  case "delete-key": {
    const [keyId, signed] = args;
    await auth.api.deleteApiKey({ body: { keyId }, headers: new Headers({ authorization: `Bearer ${signed}` }) });
    break;
  }
  case "disable-key":
    await auth.api.updateApiKey({ body: { keyId: args[0], userId: args[1], enabled: false } });
    break;
  case "set-key-metadata":
    await auth.api.updateApiKey({ body: { keyId: args[0], userId: args[1], metadata: JSON.parse(args[2]) } });
    break;
  case "revoke-session":
    await ctx.internalAdapter.deleteSession(args[0]);
    break;
  case "more": {
    // Sessions as a browser gets them (sign-up, then sign-ins), keys as
    // the app creates them.
    const [email, nKeys, nSessions] = [args[0], Number(args[1]), Number(args[2])];
    const sessions = [];
    let id = (await ctx.internalAdapter.findUserByEmail(email))?.user.id;
    if (!id && nSessions > 0) {
      const u = await signUp(email, email.split("@")[0]);
      id = u.id;
      sessions.push({ signed: u.signed, token: u.token });
    }
    while (sessions.length < nSessions) {
      const res = await auth.api.signInEmail({ body: { email, password: "password1234" }, asResponse: true });
      if (!res.ok) throw new Error(`sign-in ${email}: ${res.status} ${await res.text()}`);
      const signed = res.headers.get("set-auth-token");
      sessions.push({ signed, token: signed.split(".")[0] });
    }
    const keys = [];
    for (let i = 0; i < nKeys; i++) keys.push(await newKey(id));
    console.log(JSON.stringify({ id, keys, sessions }));
    break;
  }
  case "ban-user":
    await ctx.internalAdapter.updateUser(args[0], { banned: true, banReason: "test" });
    break;
  case "ddl":
    console.log(await (await getMigrations(auth.options)).compileMigrations());
    break;
  case "verify-key":
    console.log(JSON.stringify(await auth.api.verifyApiKey({ body: { key: args[0], permissions: args[1] ? JSON.parse(args[1]) : undefined } })));
    break;
  case "get-session":
    console.log(JSON.stringify(await auth.api.getSession({ headers: new Headers({ authorization: `Bearer ${args[0]}` }) })));
    break;
  case "usage-shell": {
    // The usage tests' side of real Better-Auth: one JSON command per
    // line, one JSON answer per line.
    //   {"op":"create","userId":u,"body":{...}}  → {"id","key"}
    //   {"op":"verify","key":k}                  → {"code"} ("OK" or the error code), tryAgainIn
    //   {"op":"verify-many","key":k,"n":n}       → {"codes":{code: count}}: n verifies at once
    //   {"op":"age","ids":[...],"ms":n}          → moves createdAt, lastRefillAt, lastRequest back n ms
    //   {"op":"update","id":id,"userId":u,"body":{...}} → updateApiKey (the app's own)
  //   {"op":"row","id":id}                     → the usage columns (dates as epoch ms, and as stored)
    const readline = (await import("node:readline")).createInterface({ input: process.stdin });
    const code = (r) => (r.valid ? "OK" : r.error.code);
    const dates = ["createdAt", "lastRefillAt", "lastRequest", "updatedAt"];
    for await (const line of readline) {
      const c = JSON.parse(line);
      let out;
      switch (c.op) {
        case "create":
          out = await newKey(c.userId, c.body);
          break;
        case "verify": {
          const r = await auth.api.verifyApiKey({ body: { key: c.key } });
          out = { code: code(r), tryAgainIn: r.error?.details?.tryAgainIn ?? null };
          break;
        }
        case "update": {
          // The app's updateApiKey, server side, as a dashboard calls it.
          const r = await auth.api.updateApiKey({ body: { keyId: c.id, userId: c.userId, ...c.body } });
          out = { remaining: r.remaining ?? null };
          break;
        }
        case "verify-many": {
          const rs = await Promise.all(Array.from({ length: c.n }, () => auth.api.verifyApiKey({ body: { key: c.key } })));
          out = { codes: {} };
          for (const r of rs) out.codes[code(r)] = (out.codes[code(r)] ?? 0) + 1;
          break;
        }
        case "age":
          for (const id of c.ids) {
            const [row] = await sql(`SELECT ${dates.slice(0, 3).map((f) => `"${col(f)}"`).join(", ")} FROM "apikey" WHERE "id" = ?`, [id]);
            const set = dates.slice(0, 3).filter((f) => row[col(f)] !== null);
            const values = set.map((f) => {
              const d = new Date(new Date(row[col(f)]).getTime() - c.ms);
              return sqlitePath ? d.toISOString() : d;
            });
            await sql(`UPDATE "apikey" SET ${set.map((f) => `"${col(f)}" = ?`).join(", ")} WHERE "id" = ?`, [...values, id]);
          }
          out = {};
          break;
        case "row": {
          const fields = ["remaining", "requestCount", ...dates];
          const [row] = await sql(`SELECT ${fields.map((f) => `"${col(f)}"`).join(", ")} FROM "apikey" WHERE "id" = ?`, [c.id]);
          out = row ? {} : null;
          if (row) {
            for (const f of fields) {
              const v = row[col(f)];
              out[f] = dates.includes(f) && v !== null ? new Date(v).getTime() : v;
              if (dates.includes(f)) out[f + "Stored"] = v instanceof Date ? v.toISOString() : v;
            }
          }
          break;
        }
        default:
          throw new Error(`unknown usage-shell op ${c.op}`);
      }
      process.stdout.write(JSON.stringify(out) + "\n");
    }
    break;
  }
  default:
    throw new Error(`unknown command ${cmd}`);
}
if (sqlitePath) db.close();
else await db.end();
if (redis) redis.disconnect();
