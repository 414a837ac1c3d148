-- API-key authentication writes `last_used_at` at most once a minute per
-- key: a key found reads only, unless its last use was recorded over a
-- minute ago; a key not found (unknown, revoked, its creator deactivated)
-- writes nothing at all.
CREATE OR REPLACE FUNCTION auth_use_api_key(p_key_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, user_id uuid, role text, tier text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH found AS (
        SELECT k.id, k.tenant_id, k.user_id, k.role, t.tier, k.last_used_at
        FROM api_keys k
        JOIN users u ON u.id = k.user_id
        JOIN tenants t ON t.id = k.tenant_id
        WHERE k.key_hash = p_key_hash
          AND k.revoked_at IS NULL
          AND u.is_active
    ), touched AS (
        UPDATE api_keys k SET last_used_at = now()
        FROM found f
        WHERE k.id = f.id
          AND (f.last_used_at IS NULL OR f.last_used_at < now() - interval '1 minute')
    )
    SELECT f.id, f.tenant_id, f.user_id, f.role, f.tier FROM found f
$$;
