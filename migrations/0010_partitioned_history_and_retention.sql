-- Stock history partitioned by month, and what retention needs to purge the
-- other growing tables by index.
--
-- The partition key is the id itself: ids are UUID v7, whose first 48 bits
-- are the creation time in milliseconds, so a month is a range of ids. A
-- history page (`id < cursor ORDER BY id DESC LIMIT n`) then prunes the
-- months newer than its cursor and reads the older ones in order only until
-- the page is full; retention drops a whole month with its table. Beat
-- creates months ahead (`stock_history_add_partitions`); anything outside
-- them (an id that is not v7, a month not created in time) lands in the
-- default partition and moves out when its month is created.

-- The smallest UUID v7 of an instant: the bound of a month's range.
CREATE FUNCTION uuid_v7_floor(p_at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM p_at) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

ALTER TABLE product_stock_history RENAME TO product_stock_history_unpartitioned;
ALTER TABLE product_stock_history_unpartitioned
    RENAME CONSTRAINT product_stock_history_pkey TO product_stock_history_unpartitioned_pkey;
DROP INDEX product_stock_history_product_idx;
DROP INDEX product_stock_history_product_id_idx;

-- Append-only: one row per stock change, manual or synced.
CREATE TABLE product_stock_history (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    product_id  uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    -- NULL for the first record of a product.
    previous_stock integer CHECK (previous_stock >= 0),
    stock       integer NOT NULL CHECK (stock >= 0),
    source      text NOT NULL CHECK (source IN ('manual', 'sync')),
    recorded_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (id);
CREATE INDEX product_stock_history_product_idx ON product_stock_history (tenant_id, product_id, id);
-- The product's cascade (run without row-level security, by product alone).
CREATE INDEX product_stock_history_product_id_idx ON product_stock_history (product_id, id);
CREATE TABLE product_stock_history_default PARTITION OF product_stock_history DEFAULT;

-- Creates the monthly partitions (UTC months) from p_from's month to
-- p_until's, those missing only; rows of a new month waiting in the default
-- partition move into it. Returns how many were created. (Created in public
-- by name: pg_catalog comes first in the function's search_path.)
CREATE FUNCTION stock_history_add_partitions(p_from timestamptz, p_until timestamptz)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    month timestamp := date_trunc('month', p_from AT TIME ZONE 'UTC');
    low uuid;
    high uuid;
    part text;
    created integer := 0;
BEGIN
    WHILE month <= p_until AT TIME ZONE 'UTC' LOOP
        part := format('product_stock_history_y%sm%s', to_char(month, 'YYYY'), to_char(month, 'MM'));
        IF to_regclass('public.' || part) IS NULL THEN
            low := uuid_v7_floor(month AT TIME ZONE 'UTC');
            high := uuid_v7_floor((month + interval '1 month') AT TIME ZONE 'UTC');
            IF EXISTS (SELECT 1 FROM product_stock_history_default WHERE id >= low AND id < high) THEN
                EXECUTE format('CREATE TABLE public.%I (LIKE product_stock_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
                EXECUTE format(
                    'WITH moved AS (DELETE FROM product_stock_history_default
                                    WHERE id >= $1 AND id < $2 RETURNING *)
                     INSERT INTO %I SELECT * FROM moved', part) USING low, high;
                EXECUTE format('ALTER TABLE product_stock_history ATTACH PARTITION %I
                                FOR VALUES FROM (%L) TO (%L)', part, low, high);
            ELSE
                EXECUTE format('CREATE TABLE public.%I PARTITION OF product_stock_history
                                FOR VALUES FROM (%L) TO (%L)', part, low, high);
            END IF;
            created := created + 1;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END
$$;

-- Drops the monthly partitions that end at or before p_before (whole months
-- only: history is kept at least its retention, at most a month longer), and
-- deletes up to p_batch older rows of the default partition. Returns the rows
-- removed.
CREATE FUNCTION stock_history_drop_partitions(p_before timestamptz, p_batch integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    part record;
    counted bigint;
    removed bigint := 0;
BEGIN
    FOR part IN
        SELECT c.relname AS name
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'product_stock_history'::regclass
          AND c.relname ~ '^product_stock_history_y[0-9]{4}m[0-9]{2}$'
          AND to_date(substr(c.relname, 24, 4) || substr(c.relname, 29, 2), 'YYYYMM')
                  + interval '1 month' <= p_before AT TIME ZONE 'UTC'
        ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT count(*) FROM %I', part.name) INTO counted;
        EXECUTE format('DROP TABLE %I', part.name);
        removed := removed + counted;
    END LOOP;
    DELETE FROM product_stock_history_default
    WHERE id IN (SELECT id FROM product_stock_history_default
                 WHERE recorded_at < p_before LIMIT p_batch);
    GET DIAGNOSTICS counted = ROW_COUNT;
    RETURN removed + counted;
END
$$;

-- The existing history: its months (and three ahead) first, then the rows.
SELECT stock_history_add_partitions(
    COALESCE((SELECT min(recorded_at) FROM product_stock_history_unpartitioned), now()),
    now() + interval '3 months');
INSERT INTO product_stock_history SELECT * FROM product_stock_history_unpartitioned;
DROP TABLE product_stock_history_unpartitioned;

ALTER TABLE product_stock_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON product_stock_history
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON product_stock_history TO stock_tracker_app;

-- Retention of the other tables: rows past their kind's age, found by
-- index, deleted p_batch at a time (beat calls again while a batch is full,
-- each in its own short transaction). Across tenants, through this one
-- function, like the credential purge before it.
CREATE INDEX outbox_events_published_idx ON outbox_events (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (updated_at) WHERE status <> 'pending';
CREATE INDEX telegram_deliveries_finished_idx ON telegram_deliveries (updated_at) WHERE status <> 'pending';
CREATE INDEX sync_jobs_finished_idx ON sync_jobs (finished_at) WHERE status IN ('succeeded', 'failed');
CREATE INDEX refresh_tokens_expiry_idx ON refresh_tokens (expires_at);

-- p_kind: outbox_events (published before p_before), webhook_deliveries and
-- telegram_deliveries (finished, last changed before p_before), sync_jobs
-- (finished before p_before), revoked_access_tokens and refresh_tokens
-- (expired before p_before).
CREATE FUNCTION retention_purge(p_kind text, p_before timestamptz, p_batch integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
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
    WHEN 'revoked_access_tokens' THEN
        DELETE FROM revoked_access_tokens WHERE jti IN (
            SELECT jti FROM revoked_access_tokens WHERE expires_at < p_before LIMIT p_batch);
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

-- Replaced by retention_purge (its two kinds of credentials).
DROP FUNCTION auth_purge_expired(interval, interval);

-- Idle connections a page at a time (keyset on the connection id), so
-- scheduling every tenant's sync never holds one unbounded result; the
-- active-job check is a probe of sync_jobs by connection.
DROP FUNCTION sync_idle_connections();
CREATE FUNCTION sync_idle_connections(p_after uuid, p_limit integer)
RETURNS TABLE (tenant_id uuid, connection_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
    SELECT c.tenant_id, c.id FROM marketplace_connections c
    WHERE c.id > COALESCE(p_after, '00000000-0000-0000-0000-000000000000')
      AND NOT EXISTS (
        SELECT 1 FROM sync_jobs j
        WHERE j.connection_id = c.id AND j.status IN ('queued', 'running')
    )
    ORDER BY c.id
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION sync_idle_connections(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync_idle_connections(uuid, integer) TO stock_tracker_app;

REVOKE ALL ON FUNCTION stock_history_add_partitions(timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION stock_history_drop_partitions(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention_purge(text, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stock_history_add_partitions(timestamptz, timestamptz) TO stock_tracker_app;
GRANT EXECUTE ON FUNCTION stock_history_drop_partitions(timestamptz, integer) TO stock_tracker_app;
GRANT EXECUTE ON FUNCTION retention_purge(text, timestamptz, integer) TO stock_tracker_app;
