-- Marketplace sync: jobs (the record of every sync, whatever the broker
-- does) and the outbox of domain events written in the same transaction as
-- a job's final state.

CREATE TABLE sync_jobs (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    connection_id      uuid NOT NULL REFERENCES marketplace_connections (id) ON DELETE CASCADE,
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- Deliveries of the task that started running (a redelivery after a
    -- worker died, or a retry, adds one).
    attempts           integer NOT NULL DEFAULT 0,
    products_seen      integer NOT NULL DEFAULT 0,
    products_created   integer NOT NULL DEFAULT 0,
    products_updated   integer NOT NULL DEFAULT 0,
    stock_changes      integer NOT NULL DEFAULT 0,
    low_stock_products integer NOT NULL DEFAULT 0,
    error              text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Last time the task was handed to the broker (NULL: never, broker down).
    enqueued_at        timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    duration_ms        integer
);
-- At most one queued or running job per connection: a second request finds it.
CREATE UNIQUE INDEX sync_jobs_one_active_idx ON sync_jobs (connection_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX sync_jobs_tenant_idx ON sync_jobs (tenant_id, id);
CREATE INDEX sync_jobs_queued_idx ON sync_jobs (created_at) WHERE status = 'queued';

CREATE TABLE outbox_events (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type   text NOT NULL CHECK (event_type IN ('sync.completed', 'sync.failed', 'stock.low')),
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Set when turned into deliveries (the notifications issue).
    published_at timestamptz
);
CREATE INDEX outbox_events_unpublished_idx ON outbox_events (created_at) WHERE published_at IS NULL;
CREATE INDEX outbox_events_tenant_idx ON outbox_events (tenant_id, id);

ALTER TABLE sync_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sync_jobs
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

ALTER TABLE outbox_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox_events
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

GRANT SELECT, INSERT, UPDATE, DELETE ON sync_jobs, outbox_events TO stock_tracker_app;

-- Beat's cross-tenant paths, each returning only ids. Row-level security
-- stays on for everything else: the tasks these ids start run per tenant.

-- Connections of every tenant that have no queued or running job.
CREATE FUNCTION sync_idle_connections() RETURNS TABLE (tenant_id uuid, connection_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT c.tenant_id, c.id FROM marketplace_connections c
    WHERE NOT EXISTS (
        SELECT 1 FROM sync_jobs j
        WHERE j.connection_id = c.id AND j.status IN ('queued', 'running')
    )
    ORDER BY c.id
$$;
REVOKE ALL ON FUNCTION sync_idle_connections() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync_idle_connections() TO stock_tracker_app;

-- Jobs still queued after `p_age` since they were last handed to the broker
-- (or created, if never handed over): their message was lost or never sent.
CREATE FUNCTION sync_stale_queued_jobs(p_age interval)
RETURNS TABLE (tenant_id uuid, connection_id uuid, job_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT j.tenant_id, j.connection_id, j.id FROM sync_jobs j
    WHERE j.status = 'queued' AND COALESCE(j.enqueued_at, j.created_at) < now() - p_age
    ORDER BY j.created_at
    LIMIT 1000
$$;
REVOKE ALL ON FUNCTION sync_stale_queued_jobs(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync_stale_queued_jobs(interval) TO stock_tracker_app;
