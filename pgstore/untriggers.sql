-- Removes the revocation triggers of triggers.sql.
DROP TRIGGER IF EXISTS "caddy_betterauth_apikey" ON "apikey";
DROP TRIGGER IF EXISTS "caddy_betterauth_session" ON "session";
DROP TRIGGER IF EXISTS "caddy_betterauth_user" ON "user";
DROP FUNCTION IF EXISTS "caddy_betterauth_notify"();
