-- Revocation by session: logout and refresh-token reuse end every access
-- token of the session (the refresh-token family its `sid` claim names), not
-- only the one presented. Replaces the per-token deny-list.
--
-- A revoked session's row lives until its last access token has expired
-- (`expires_at`, set by the service: the revocation time plus the access
-- token lifetime); retention then removes it (kind `revoked_sessions`).
CREATE TABLE revoked_sessions (
    session_id  uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_sessions_expiry_idx ON revoked_sessions (expires_at);
CREATE INDEX revoked_sessions_tenant_idx ON revoked_sessions (tenant_id);
CREATE INDEX revoked_sessions_user_idx ON revoked_sessions (user_id);

ALTER TABLE revoked_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON revoked_sessions
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());
GRANT SELECT, INSERT, DELETE ON revoked_sessions TO stock_tracker_app;

-- Tokens deny-listed one by one before this release carry no session the
-- old rows name: their users' tokens minted before the logout are ended
-- instead (one sign-in more for those users, never a revoked token
-- accepted again).
UPDATE users u SET tokens_invalid_before = r.revoked_at
FROM (
    SELECT user_id, max(revoked_at) AS revoked_at FROM revoked_access_tokens
    WHERE expires_at > now() GROUP BY user_id
) r
WHERE u.id = r.user_id
  AND (u.tokens_invalid_before IS NULL OR u.tokens_invalid_before < r.revoked_at);
DROP TABLE revoked_access_tokens;

-- The invalidation records of 0012, now of sessions.
DELETE FROM auth_invalidations WHERE kind = 'access_token';
ALTER TABLE auth_invalidations DROP CONSTRAINT auth_invalidations_kind_check;
ALTER TABLE auth_invalidations ADD CONSTRAINT auth_invalidations_kind_check
    CHECK (kind IN ('session', 'user', 'api_key'));
COMMENT ON COLUMN auth_invalidations.kind IS
    'session (subject: the session, until: when its last access token expires), user (subject: the user, until: the new tokens_invalid_before) or api_key (its hash: the cached grant must go)';

CREATE OR REPLACE FUNCTION auth_invalidation_record() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'revoked_sessions' THEN
        INSERT INTO auth_invalidations (tenant_id, kind, subject, until)
        VALUES (NEW.tenant_id, 'session', NEW.session_id, NEW.expires_at);
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
CREATE TRIGGER auth_invalidation AFTER INSERT ON revoked_sessions
    FOR EACH ROW EXECUTE FUNCTION auth_invalidation_record();

-- Refilling Redis's revocation state after it lost its data.
DROP FUNCTION auth_active_revocations(integer);

CREATE OR REPLACE FUNCTION retention_purge(p_kind text, p_before timestamptz, p_batch integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    CASE p_kind
    WHEN 'outbox_events' THEN
        DELETE FROM outbox_events WHERE id IN (
            SELECT id FROM outbox_events
            WHERE published_at IS NOT NULL AND published_at < p_before LIMIT p_batch);
    WHEN 'webhook_deliveries' THEN
        DELETE FROM webhook_deliveries WHERE id IN (
            SELECT id FROM webhook_deliveries
            WHERE status <> 'pending' AND updated_at < p_before LIMIT p_batch);
    WHEN 'telegram_deliveries' THEN
        DELETE FROM telegram_deliveries WHERE id IN (
            SELECT id FROM telegram_deliveries
            WHERE status <> 'pending' AND updated_at < p_before LIMIT p_batch);
    WHEN 'sync_jobs' THEN
        DELETE FROM sync_jobs WHERE id IN (
            SELECT id FROM sync_jobs
            WHERE status IN ('succeeded', 'failed') AND finished_at < p_before LIMIT p_batch);
    WHEN 'revoked_sessions' THEN
        DELETE FROM revoked_sessions WHERE session_id IN (
            SELECT session_id FROM revoked_sessions WHERE expires_at < p_before LIMIT p_batch);
    WHEN 'refresh_tokens' THEN
        DELETE FROM refresh_tokens WHERE id IN (
            SELECT id FROM refresh_tokens WHERE expires_at < p_before LIMIT p_batch);
    ELSE
        RAISE EXCEPTION 'unknown retention kind %', p_kind;
    END CASE;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;
