-- Credentials bound to their origin.
--
-- When a session's password sign-in happened, kept on every refresh token
-- of its family (a refresh copies it) and minted into access tokens as
-- `auth_time`: creating admin-level credentials needs a recent one. NULL
-- for sessions opened before this release: they count as long ago.
ALTER TABLE refresh_tokens ADD COLUMN authenticated_at timestamptz;

-- API keys may expire; an expired key is refused like a revoked one.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

DROP FUNCTION auth_find_refresh_token(bytea);
CREATE FUNCTION auth_find_refresh_token(p_token_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, user_id uuid, family_id uuid,
               expires_at timestamptz, used_at timestamptz, revoked_at timestamptz,
               authenticated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT r.id, r.tenant_id, r.user_id, r.family_id, r.expires_at, r.used_at, r.revoked_at,
           r.authenticated_at
    FROM refresh_tokens r
    WHERE r.token_hash = p_token_hash
$$;

-- API-key authentication: expired keys refused, the expiry returned (so the
-- cached grant ends with the key), and `last_used_at` written at most once a
-- minute per key — a key found reads only, unless its last use was recorded
-- over a minute ago; a key not found writes nothing at all.
DROP FUNCTION auth_use_api_key(bytea);
CREATE FUNCTION auth_use_api_key(p_key_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, user_id uuid, role text, tier text,
               expires_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH found AS (
        SELECT k.id, k.tenant_id, k.user_id, k.role, t.tier, k.last_used_at, k.expires_at
        FROM api_keys k
        JOIN users u ON u.id = k.user_id
        JOIN tenants t ON t.id = k.tenant_id
        WHERE k.key_hash = p_key_hash
          AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())
          AND u.is_active
    ), touched AS (
        UPDATE api_keys k SET last_used_at = now()
        FROM found f
        WHERE k.id = f.id
          AND (f.last_used_at IS NULL OR f.last_used_at < now() - interval '1 minute')
    )
    SELECT f.id, f.tenant_id, f.user_id, f.role, f.tier, f.expires_at FROM found f
$$;

REVOKE ALL ON FUNCTION auth_find_refresh_token(bytea), auth_use_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_find_refresh_token(bytea), auth_use_api_key(bytea)
    TO stock_tracker_app;
