-- Revocations and credential changes reach every API process through
-- PostgreSQL, whatever happened to the Redis write that follows them: the
-- transaction that makes one also records it here (triggers, so no code
-- path can forget), and every API process applies what is recorded to
-- Redis — the same entries the direct write makes, so applying one twice
-- changes nothing — then deletes the record.

CREATE TABLE auth_invalidations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    -- 'access_token' (subject: its jti, until: its expiry), 'user'
    -- (subject: the user, until: the new tokens_invalid_before) or
    -- 'api_key' (its hash: the cached grant must go).
    kind         text NOT NULL CHECK (kind IN ('access_token', 'user', 'api_key')),
    subject      uuid,
    until        timestamptz,
    api_key_hash bytea,
    created_at   timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON TABLE auth_invalidations FROM PUBLIC;

CREATE FUNCTION auth_invalidation_record() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'revoked_access_tokens' THEN
        INSERT INTO auth_invalidations (tenant_id, kind, subject, until)
        VALUES (NEW.tenant_id, 'access_token', NEW.jti, NEW.expires_at);
    ELSIF TG_TABLE_NAME = 'users' THEN
        IF NEW.tokens_invalid_before IS NOT NULL THEN
            INSERT INTO auth_invalidations (tenant_id, kind, subject, until)
            VALUES (NEW.tenant_id, 'user', NEW.id, NEW.tokens_invalid_before);
        END IF;
        INSERT INTO auth_invalidations (tenant_id, kind, api_key_hash)
        SELECT k.tenant_id, 'api_key', k.key_hash FROM api_keys k WHERE k.user_id = NEW.id;
    ELSE -- api_keys
        INSERT INTO auth_invalidations (tenant_id, kind, api_key_hash)
        VALUES (OLD.tenant_id, 'api_key', OLD.key_hash);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER auth_invalidation AFTER INSERT ON revoked_access_tokens
    FOR EACH ROW EXECUTE FUNCTION auth_invalidation_record();
CREATE TRIGGER auth_invalidation AFTER UPDATE OF tokens_invalid_before, is_active, role ON users
    FOR EACH ROW
    WHEN (OLD.tokens_invalid_before IS DISTINCT FROM NEW.tokens_invalid_before
       OR OLD.is_active IS DISTINCT FROM NEW.is_active
       OR OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION auth_invalidation_record();
CREATE TRIGGER auth_invalidation AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION auth_invalidation_record();
CREATE TRIGGER auth_invalidation_on_delete AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION auth_invalidation_record();

-- The oldest records not being applied by another process, locked for the
-- caller's transaction (which deletes them once Redis has them).
CREATE FUNCTION auth_invalidations_pending(p_limit integer)
RETURNS TABLE (id bigint, tenant_id uuid, kind text, subject uuid, until timestamptz, api_key_hash bytea)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT i.id, i.tenant_id, i.kind, i.subject, i.until, i.api_key_hash FROM auth_invalidations i
    ORDER BY i.id
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
$$;

CREATE FUNCTION auth_invalidations_applied(p_ids bigint[]) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    DELETE FROM auth_invalidations WHERE id = ANY (p_ids)
$$;

REVOKE ALL ON FUNCTION auth_invalidation_record() FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_invalidations_pending(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_invalidations_applied(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_invalidations_pending(integer) TO stock_tracker_app;
GRANT EXECUTE ON FUNCTION auth_invalidations_applied(bigint[]) TO stock_tracker_app;
