-- Webhook subscriptions and their delivery log.

CREATE TABLE webhook_subscriptions (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url              text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2048),
    events           text[] NOT NULL CHECK (
                         cardinality(events) > 0
                         AND events <@ ARRAY['sync.completed', 'sync.failed', 'stock.low']),
    description      text CHECK (char_length(description) <= 500),
    -- Fernet token of the signing secret (`whsec_…`). Shown once, never logged.
    secret_encrypted text NOT NULL,
    enabled          boolean NOT NULL DEFAULT true,
    -- Why the service disabled it (deliveries kept failing), for the tenant to read.
    disabled_reason  text,
    -- Start of the current run of failed deliveries; NULL after a success.
    failing_since    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_tenant_idx ON webhook_subscriptions (tenant_id, id);

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    -- The outbox event (or test event) delivered; one delivery per event and subscription.
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    status_code      integer,
    error            text,
    next_attempt_at  timestamptz,
    -- When beat last handed it to the broker (not again for a while).
    handed_over_at   timestamptz,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_event_key UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_subscription_idx ON webhook_deliveries (tenant_id, subscription_id, id);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

ALTER TABLE webhook_subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_subscriptions
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions, webhook_deliveries TO stock_tracker_app;

-- Beat's cross-tenant paths (ids only; the work runs per tenant).

-- Outbox events not yet turned into deliveries.
CREATE FUNCTION webhook_undispatched_events(p_limit integer)
RETURNS TABLE (tenant_id uuid, event_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT o.tenant_id, o.id FROM outbox_events o
    WHERE o.published_at IS NULL ORDER BY o.created_at LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION webhook_undispatched_events(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_undispatched_events(integer) TO stock_tracker_app;

-- Takes the pending deliveries whose next attempt is due and that were not
-- handed to the broker in the last `p_rehand` (their message may be lost).
CREATE FUNCTION webhook_take_due_deliveries(p_limit integer, p_rehand interval)
RETURNS TABLE (tenant_id uuid, delivery_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    UPDATE webhook_deliveries d SET handed_over_at = now()
    WHERE d.id IN (
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND (handed_over_at IS NULL OR handed_over_at < now() - p_rehand)
        ORDER BY next_attempt_at LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING d.tenant_id, d.id
$$;
REVOKE ALL ON FUNCTION webhook_take_due_deliveries(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_take_due_deliveries(integer, interval) TO stock_tracker_app;
