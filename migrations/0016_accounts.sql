-- Accounts: single-use tokens sent by email (password reset, email
-- verification), the outbox the emails are delivered from, whether a user's
-- address is verified, invitations, the audit log, tenant deletion with a
-- grace period, and tenant exports.

-- Accounts that existed before verification count as verified: they were
-- created under the old rules, and requiring it now would lock them out.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
UPDATE users SET email_verified_at = created_at;

-- A token mailed to a user. Only its SHA-256 is stored (256 random bits: a
-- slow hash adds nothing); it works once (`used_at`) and until `expires_at`.
-- `email` is the address it was sent to: verifying proves that address, and a
-- token sent to an address the account no longer has does nothing.
CREATE TABLE account_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    email       text NOT NULL,
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_tokens_tenant_idx ON account_tokens (tenant_id);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry_idx ON account_tokens (expires_at);

ALTER TABLE account_tokens ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON account_tokens
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());
GRANT SELECT, INSERT, UPDATE ON account_tokens TO stock_tracker_app;

-- The email outbox: written in the transaction that creates what the email
-- announces (a token), so neither exists without the other; sent by the
-- workers with the notification channels' retry schedule. The link carries a
-- token, so it is stored encrypted (Fernet, rotated with the other
-- secrets) and cleared once the email is sent or has failed for good.
CREATE TABLE email_messages (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('password_reset', 'email_verification', 'invitation')),
    recipient        text NOT NULL CHECK (char_length(recipient) BETWEEN 3 AND 320),
    -- What the template shows besides the link (names, lifetimes): no secrets.
    context          jsonb NOT NULL DEFAULT '{}',
    link_encrypted   text,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    handed_over_at   timestamptz,
    error            text,
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_messages_tenant_idx ON email_messages (tenant_id, created_at);
CREATE INDEX email_messages_due_idx ON email_messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX email_messages_finished_idx ON email_messages (updated_at) WHERE status <> 'pending';

ALTER TABLE email_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON email_messages
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());
GRANT SELECT, INSERT, UPDATE ON email_messages TO stock_tracker_app;

-- Invitations: an admin invites an address with a role; the emailed link
-- lets the invitee choose a password and join. Only the token's SHA-256 is
-- stored. At most one pending invitation per address and tenant (a new one
-- revokes the old).
CREATE TABLE invitations (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email             text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    role              text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by        uuid REFERENCES users (id) ON DELETE SET NULL,
    token_hash        bytea NOT NULL UNIQUE,
    expires_at        timestamptz NOT NULL,
    accepted_at       timestamptz,
    accepted_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invitations_tenant_idx ON invitations (tenant_id, id);
CREATE INDEX invitations_invited_by_idx ON invitations (invited_by);
CREATE INDEX invitations_accepted_user_idx ON invitations (accepted_user_id);
CREATE INDEX invitations_expiry_idx ON invitations (expires_at);
CREATE UNIQUE INDEX invitations_pending_key ON invitations (tenant_id, lower(email))
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());
GRANT SELECT, INSERT, UPDATE ON invitations TO stock_tracker_app;

-- A presented invitation token, before its tenant is known.
CREATE FUNCTION invitation_find(p_token_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, email text, role text, expires_at timestamptz,
               accepted_at timestamptz, revoked_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT i.id, i.tenant_id, i.email, i.role, i.expires_at, i.accepted_at, i.revoked_at
    FROM invitations i
    WHERE i.token_hash = p_token_hash
$$;
REVOKE ALL ON FUNCTION invitation_find(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invitation_find(bytea) TO stock_tracker_app;

-- The audit log. Actors and targets are not foreign keys: the record
-- outlives the users, keys and invitations it names.
CREATE TABLE audit_events (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event             text NOT NULL CHECK (char_length(event) BETWEEN 1 AND 64),
    actor_user_id     uuid,
    actor_api_key_id  uuid,
    target_type       text,
    target_id         uuid,
    ip                inet,
    request_id        text,
    details           jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_tenant_idx ON audit_events (tenant_id, id DESC);
CREATE INDEX audit_events_created_idx ON audit_events (created_at);

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());
-- Appended and read, never changed (retention deletes as the owner).
GRANT SELECT, INSERT ON audit_events TO stock_tracker_app;

-- Tenant deletion: the tenant is disabled at once (`deleted_at`: no sign-in,
-- no API key) and purged by beat's retention once `purge_after` has passed;
-- its owner may restore it until then.
ALTER TABLE tenants ADD COLUMN deleted_at timestamptz, ADD COLUMN purge_after timestamptz;
CREATE INDEX tenants_purge_idx ON tenants (purge_after) WHERE deleted_at IS NOT NULL;

-- Tenant exports: one archive (JSON lines per table, no secrets) built by a
-- worker, downloadable by admins until `expires_at`, then removed by
-- retention.
CREATE TABLE tenant_exports (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    requested_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    archive       bytea,
    size_bytes    bigint,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    expires_at    timestamptz
);
CREATE INDEX tenant_exports_tenant_idx ON tenant_exports (tenant_id, id);
CREATE INDEX tenant_exports_requested_by_idx ON tenant_exports (requested_by);
CREATE INDEX tenant_exports_expiry_idx ON tenant_exports (expires_at);

ALTER TABLE tenant_exports ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_exports
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());
GRANT SELECT, INSERT, UPDATE ON tenant_exports TO stock_tracker_app;

-- API keys of a deleted tenant stop working.
CREATE OR REPLACE FUNCTION auth_use_api_key(p_key_hash bytea)
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
          AND t.deleted_at IS NULL
    ), touched AS (
        UPDATE api_keys k SET last_used_at = now()
        FROM found f
        WHERE k.id = f.id
          AND (f.last_used_at IS NULL OR f.last_used_at < now() - interval '1 minute')
    )
    SELECT f.id, f.tenant_id, f.user_id, f.role, f.tier, f.expires_at FROM found f
$$;

-- A deleted tenant's connections are not synced.
CREATE OR REPLACE FUNCTION sync_idle_connections(p_after uuid, p_limit integer)
RETURNS TABLE (tenant_id uuid, connection_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT c.tenant_id, c.id FROM marketplace_connections c
    JOIN tenants t ON t.id = c.tenant_id AND t.deleted_at IS NULL
    WHERE c.id > COALESCE(p_after, '00000000-0000-0000-0000-000000000000')
      AND NOT EXISTS (
        SELECT 1 FROM sync_jobs j
        WHERE j.connection_id = c.id AND j.status IN ('queued', 'running')
    )
    ORDER BY c.id
    LIMIT p_limit
$$;

-- Sign-in also reads whether the address is verified and the tenant
-- deleted; account emails, the name they greet.
DROP FUNCTION auth_find_login(text);
CREATE FUNCTION auth_find_login(p_email text)
RETURNS TABLE (user_id uuid, tenant_id uuid, password_hash text, role text,
               is_active boolean, tier text, email_verified_at timestamptz, full_name text,
               tenant_deleted_at timestamptz, tenant_purge_after timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT u.id, u.tenant_id, u.password_hash, u.role, u.is_active, t.tier,
           u.email_verified_at, u.full_name, t.deleted_at, t.purge_after
    FROM users u JOIN tenants t ON t.id = u.tenant_id
    WHERE lower(u.email) = lower(p_email)
$$;
REVOKE ALL ON FUNCTION auth_find_login(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_find_login(text) TO stock_tracker_app;

-- A presented token, before its tenant is known.
CREATE FUNCTION account_find_token(p_token_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, user_id uuid, purpose text, email text,
               expires_at timestamptz, used_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT a.id, a.tenant_id, a.user_id, a.purpose, a.email, a.expires_at, a.used_at
    FROM account_tokens a
    WHERE a.token_hash = p_token_hash
$$;
REVOKE ALL ON FUNCTION account_find_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION account_find_token(bytea) TO stock_tracker_app;

-- Beat: the due emails of every tenant, stamped as handed over.
CREATE FUNCTION email_take_due_messages(p_limit integer, p_rehand interval)
RETURNS TABLE (tenant_id uuid, message_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    UPDATE email_messages m SET handed_over_at = now()
    WHERE m.id IN (
        SELECT id FROM email_messages
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND (handed_over_at IS NULL OR handed_over_at < now() - p_rehand)
        ORDER BY next_attempt_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING m.tenant_id, m.id
$$;
REVOKE ALL ON FUNCTION email_take_due_messages(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION email_take_due_messages(integer, interval) TO stock_tracker_app;

-- Retention: finished emails, tokens and invitations past their expiry, old
-- audit events, expired exports, and deleted tenants past their grace period
-- (everything of theirs goes with them: every table cascades from tenants).
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
    WHEN 'email_messages' THEN
        DELETE FROM email_messages WHERE id IN (
            SELECT id FROM email_messages
            WHERE status <> 'pending' AND updated_at < p_before LIMIT p_batch);
    WHEN 'account_tokens' THEN
        DELETE FROM account_tokens WHERE id IN (
            SELECT id FROM account_tokens WHERE expires_at < p_before LIMIT p_batch);
    WHEN 'invitations' THEN
        DELETE FROM invitations WHERE id IN (
            SELECT id FROM invitations WHERE expires_at < p_before LIMIT p_batch);
    WHEN 'deleted_tenants' THEN
        DELETE FROM tenants WHERE id IN (
            SELECT id FROM tenants
            WHERE deleted_at IS NOT NULL AND purge_after < p_before LIMIT p_batch);
    WHEN 'tenant_exports' THEN
        DELETE FROM tenant_exports WHERE id IN (
            SELECT id FROM tenant_exports WHERE expires_at < p_before LIMIT p_batch);
    WHEN 'audit_events' THEN
        DELETE FROM audit_events WHERE id IN (
            SELECT id FROM audit_events WHERE created_at < p_before LIMIT p_batch);
    ELSE
        RAISE EXCEPTION 'unknown retention kind %', p_kind;
    END CASE;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;
