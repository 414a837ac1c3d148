-- Telegram chats: the second notification channel, for the same events.

CREATE TABLE telegram_chats (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    chat_id             text NOT NULL CHECK (char_length(chat_id) BETWEEN 1 AND 64),
    -- Fernet token of the bot token (it sits in every Bot API URL). Never returned.
    bot_token_encrypted text NOT NULL,
    events              text[] NOT NULL CHECK (
                            cardinality(events) > 0
                            AND events <@ ARRAY['sync.completed', 'sync.failed', 'stock.low']),
    description         text CHECK (char_length(description) <= 500),
    enabled             boolean NOT NULL DEFAULT true,
    disabled_reason     text,
    failing_since       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telegram_chats_tenant_idx ON telegram_chats (tenant_id, id);

CREATE TABLE telegram_deliveries (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    chat_id          uuid NOT NULL REFERENCES telegram_chats (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    status_code      integer,
    error            text,
    next_attempt_at  timestamptz,
    handed_over_at   timestamptz,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telegram_deliveries_event_key UNIQUE (chat_id, event_id)
);
CREATE INDEX telegram_deliveries_chat_idx ON telegram_deliveries (tenant_id, chat_id, id);
CREATE INDEX telegram_deliveries_due_idx ON telegram_deliveries (next_attempt_at) WHERE status = 'pending';

ALTER TABLE telegram_chats ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON telegram_chats
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

ALTER TABLE telegram_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON telegram_deliveries
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON telegram_chats, telegram_deliveries TO stock_tracker_app;

CREATE FUNCTION telegram_take_due_deliveries(p_limit integer, p_rehand interval)
RETURNS TABLE (tenant_id uuid, delivery_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    UPDATE telegram_deliveries d SET handed_over_at = now()
    WHERE d.id IN (
        SELECT id FROM telegram_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND (handed_over_at IS NULL OR handed_over_at < now() - p_rehand)
        ORDER BY next_attempt_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING d.tenant_id, d.id
$$;
REVOKE ALL ON FUNCTION telegram_take_due_deliveries(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION telegram_take_due_deliveries(integer, interval) TO stock_tracker_app;
