-- A better-auth 1.4-era layout, as a Drizzle user would have it: the api-key
-- table owned through user_id with no config_id column, snake_case columns,
-- a dedicated schema, plural table names, and a renamed email column (the
-- app set user.fields.email = "email_address"). Created by hand: the current
-- Better-Auth packages can no longer produce it.
CREATE SCHEMA auth;
CREATE TABLE auth.users (
    id text PRIMARY KEY,
    name text NOT NULL,
    email_address text NOT NULL UNIQUE,
    email_verified boolean NOT NULL DEFAULT false,
    image text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE auth.sessions (
    id text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    token text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    ip_address text,
    user_agent text,
    user_id text NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE
);
CREATE TABLE auth.api_keys (
    id text PRIMARY KEY,
    name text,
    start text,
    prefix text,
    key text NOT NULL,
    user_id text NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
    refill_interval integer,
    refill_amount integer,
    last_refill_at timestamptz,
    enabled boolean,
    rate_limit_enabled boolean,
    rate_limit_time_window integer,
    rate_limit_max integer,
    request_count integer,
    remaining integer,
    last_request timestamptz,
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    permissions text,
    metadata text
);
CREATE INDEX api_keys_key_idx ON auth.api_keys (key);
