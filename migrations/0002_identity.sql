-- Identity: refresh-token families, API keys, revoked access tokens, and the
-- narrow SECURITY DEFINER functions for the paths that run before a tenant is
-- known.
--
-- Revocation state lives in Redis for speed, with these tables as the record:
-- PostgreSQL answers when Redis is unavailable, and Redis is refilled from
-- here after it loses its data.

ALTER TABLE users
    -- Access tokens issued before this instant are refused (deactivation,
    -- password change, role change, logout of every session).
    ADD COLUMN tokens_invalid_before timestamptz,
    -- Platform operators (users of an `internal` tenant) may change tenants' tiers.
    ADD COLUMN is_platform_admin boolean NOT NULL DEFAULT false,
    ADD COLUMN deactivated_at timestamptz;

-- Refresh tokens rotate: each is single-use, and its successor joins the same
-- family. Presenting a spent token means it was stolen (or the client is
-- broken): the whole family is revoked. Only a SHA-256 of the token is
-- stored; tokens are 256 random bits, so a slow hash adds nothing.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Tenant service credentials. The key is shown once; its SHA-256 is stored,
-- with a short public prefix to tell keys apart in listings and logs.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The user who created it: the key stops working when that user is deactivated.
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    role          text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    prefix        text NOT NULL UNIQUE,
    key_hash      bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);

-- Access tokens revoked before their expiry (logout). Rows past expires_at
-- are dead weight and may be deleted at any time.
CREATE TABLE revoked_access_tokens (
    jti         uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_access_tokens_expiry_idx ON revoked_access_tokens (expires_at);

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

ALTER TABLE revoked_access_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON revoked_access_tokens
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens, api_keys, revoked_access_tokens
    TO stock_tracker_app;

-- Pre-tenant lookups. Each runs as the tables' owner (which RLS does not
-- restrict), finds one row by an unguessable or user-supplied key, and returns
-- only the columns its caller needs. search_path is pinned so a caller cannot
-- redirect the function to objects of its own.

-- Sign-in by email.
CREATE FUNCTION auth_find_login(p_email text)
RETURNS TABLE (user_id uuid, tenant_id uuid, password_hash text, role text,
               is_active boolean, tier text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT u.id, u.tenant_id, u.password_hash, u.role, u.is_active, t.tier
    FROM users u JOIN tenants t ON t.id = u.tenant_id
    WHERE lower(u.email) = lower(p_email)
$$;

-- Refresh-token rotation: which tenant and family a presented token belongs to.
CREATE FUNCTION auth_find_refresh_token(p_token_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, user_id uuid, family_id uuid,
               expires_at timestamptz, used_at timestamptz, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT r.id, r.tenant_id, r.user_id, r.family_id, r.expires_at, r.used_at, r.revoked_at
    FROM refresh_tokens r
    WHERE r.token_hash = p_token_hash
$$;

-- API-key authentication. Also records the use (called once per key per cache period).
CREATE FUNCTION auth_use_api_key(p_key_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, user_id uuid, role text, tier text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    UPDATE api_keys k SET last_used_at = now()
    FROM users u, tenants t
    WHERE k.key_hash = p_key_hash
      AND k.revoked_at IS NULL
      AND u.id = k.user_id AND u.is_active
      AND t.id = k.tenant_id
    RETURNING k.id, k.tenant_id, k.user_id, k.role, t.tier
$$;

-- Refilling Redis's revocation state after it lost its data.
CREATE FUNCTION auth_active_revocations(p_access_token_ttl_secs integer)
RETURNS TABLE (kind text, subject uuid, until timestamptz, mark timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT 'jti', r.jti, r.expires_at, r.revoked_at
    FROM revoked_access_tokens r
    WHERE r.expires_at > now()
    UNION ALL
    SELECT 'user', u.id,
           u.tokens_invalid_before + make_interval(secs => p_access_token_ttl_secs),
           u.tokens_invalid_before
    FROM users u
    WHERE u.tokens_invalid_before > now() - make_interval(secs => p_access_token_ttl_secs)
$$;

-- Tier changes by a platform operator (the caller is verified by the service).
CREATE FUNCTION platform_set_tenant_tier(p_tenant_id uuid, p_tier text)
RETURNS TABLE (id uuid, name text, tier text, settings jsonb, created_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    UPDATE tenants t SET tier = p_tier, updated_at = now()
    WHERE t.id = p_tenant_id
    RETURNING t.id, t.name, t.tier, t.settings, t.created_at
$$;

REVOKE ALL ON FUNCTION auth_find_login(text), auth_find_refresh_token(bytea),
    auth_use_api_key(bytea), auth_active_revocations(integer),
    platform_set_tenant_tier(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_find_login(text), auth_find_refresh_token(bytea),
    auth_use_api_key(bytea), auth_active_revocations(integer),
    platform_set_tenant_tier(uuid, text) TO stock_tracker_app;
