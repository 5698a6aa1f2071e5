-- Revocation triggers for Better-Auth's default PostgreSQL schema (its own
-- migrations: "user", "session", "apikey" with camelCase columns). They NOTIFY
-- the gateways on channel caddy_betterauth with a row's kind, id and user id
-- after every update or delete (of api keys, not updates of their usage
-- columns alone, which Better-Auth writes on every verify). Idempotent. The
-- organization plugin's and the OAuth provider's tables are watched when
-- install-triggers finds them.
-- For other layouts, let the gateway write them: caddy better-auth
-- install-triggers [--print].
CREATE OR REPLACE FUNCTION "caddy_betterauth_notify"() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
	r jsonb := CASE WHEN TG_OP = 'INSERT' THEN to_jsonb(NEW) ELSE to_jsonb(OLD) END;
	n jsonb;
BEGIN
	IF TG_OP = 'UPDATE' AND TG_NARGS > 3 THEN
		n := to_jsonb(NEW);
		IF (n - TG_ARGV[3]::text[]) = (r - TG_ARGV[3]::text[]) THEN
			IF TG_NARGS > 6 AND current_setting('caddy_betterauth.writer', true) IS DISTINCT FROM 'usage'
				AND ((n -> TG_ARGV[4]) IS DISTINCT FROM (r -> TG_ARGV[4]) OR (n -> TG_ARGV[5]) IS DISTINCT FROM (r -> TG_ARGV[5]))
				AND NOT COALESCE(CASE WHEN (n -> TG_ARGV[5]) IS NOT DISTINCT FROM (r -> TG_ARGV[5])
					THEN (n ->> TG_ARGV[4])::numeric = (r ->> TG_ARGV[4])::numeric - 1
					ELSE (n ->> TG_ARGV[4])::numeric = (n ->> TG_ARGV[6])::numeric - 1 END, false) THEN
				PERFORM pg_notify('caddy_betterauth', json_build_object('k', TG_ARGV[0] || '_usage', 'id', r ->> TG_ARGV[1])::text);
			END IF;
			RETURN NULL;
		END IF;
	END IF;
	PERFORM pg_notify('caddy_betterauth', json_build_object(
		'k', TG_ARGV[0],
		'id', r ->> TG_ARGV[1],
		'u', CASE WHEN TG_ARGV[2] = '' THEN NULL ELSE r ->> TG_ARGV[2] END
	)::text);
	RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS "caddy_betterauth_apikey" ON "apikey";
CREATE TRIGGER "caddy_betterauth_apikey" AFTER UPDATE OR DELETE ON "apikey" FOR EACH ROW EXECUTE FUNCTION "caddy_betterauth_notify"('apikey', 'id', 'referenceId', '{"remaining","requestCount","lastRequest","lastRefillAt","updatedAt"}', 'remaining', 'lastRefillAt', 'refillAmount');
DROP TRIGGER IF EXISTS "caddy_betterauth_session" ON "session";
CREATE TRIGGER "caddy_betterauth_session" AFTER UPDATE OR DELETE ON "session" FOR EACH ROW EXECUTE FUNCTION "caddy_betterauth_notify"('session', 'id', 'userId');
DROP TRIGGER IF EXISTS "caddy_betterauth_user" ON "user";
CREATE TRIGGER "caddy_betterauth_user" AFTER UPDATE OR DELETE ON "user" FOR EACH ROW EXECUTE FUNCTION "caddy_betterauth_notify"('user', 'id', '');
