-- Sync jobs run under a lease, and beat leads under a lease with a fencing
-- token: neither a frozen worker nor a frozen beat can block the others for
-- longer than its lease, nor write after it has been replaced.

-- A running job belongs to the worker holding `lease_token` until
-- `lease_expires_at` (renewed as it runs); every write of the run is
-- conditional on the token, so a worker that lost its lease writes nothing.
-- A queued job runs once `run_after` has passed (a retry's backoff lives
-- here, not in a delayed message).
ALTER TABLE sync_jobs
    ADD COLUMN run_after        timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_token      uuid,
    ADD COLUMN lease_expires_at timestamptz;

-- The sweeper's and the reaper's reads: due queued jobs, expired leases.
DROP INDEX sync_jobs_queued_idx;
CREATE INDEX sync_jobs_due_idx ON sync_jobs (run_after) WHERE status = 'queued';
CREATE INDEX sync_jobs_lease_idx ON sync_jobs (lease_expires_at) WHERE status = 'running';

-- Queued jobs that are due and whose message is missing: a retry or a
-- reaped job (attempts > 0: nobody else sends it), a new job not confirmed
-- by the broker (`enqueued_at` NULL) within `p_unsent_grace` of its
-- creation (the API sends it meanwhile), or a job confirmed longer than
-- `p_resend_after` (one lease) ago and still not taken — lost, or deep in a
-- backlog, where the second message is dropped as a duplicate.
DROP FUNCTION sync_stale_queued_jobs(interval);
CREATE FUNCTION sync_due_jobs(p_unsent_grace interval, p_resend_after interval, p_limit integer)
RETURNS TABLE (tenant_id uuid, connection_id uuid, job_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT j.tenant_id, j.connection_id, j.id FROM sync_jobs j
    WHERE j.status = 'queued' AND j.run_after <= now()
      AND CASE WHEN j.enqueued_at IS NULL
               THEN j.attempts > 0 OR j.run_after < now() - p_unsent_grace
               ELSE j.enqueued_at < now() - p_resend_after END
    ORDER BY j.run_after
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION sync_due_jobs(interval, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync_due_jobs(interval, interval, integer) TO stock_tracker_app;

-- Running jobs whose lease has expired (a worker frozen, partitioned or
-- dead), with the token they were claimed under: the reaper's writes are
-- conditional on it.
CREATE FUNCTION sync_expired_leases(p_limit integer)
RETURNS TABLE (tenant_id uuid, job_id uuid, lease_token uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT j.tenant_id, j.id, j.lease_token FROM sync_jobs j
    WHERE j.status = 'running' AND COALESCE(j.lease_expires_at, '-infinity') < now()
    ORDER BY j.lease_expires_at NULLS FIRST
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION sync_expired_leases(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sync_expired_leases(integer) TO stock_tracker_app;

-- Beat's leadership: one row, held by one beat process until `expires_at`;
-- every takeover increments the fencing token. Reached only through the
-- functions below.
CREATE TABLE beat_leadership (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    holder        text NOT NULL,
    fencing_token bigint NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);

-- When each scheduled task last ran, and under which token: a new leader
-- continues the schedule instead of running everything at once.
CREATE TABLE beat_schedule (
    task          text PRIMARY KEY,
    last_run_at   timestamptz NOT NULL,
    fencing_token bigint NOT NULL
);

-- Takes the lead when nobody holds it (or the holder's lease expired):
-- the new fencing token, or NULL while another beat leads.
CREATE FUNCTION beat_acquire(p_holder text, p_lease interval) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    INSERT INTO beat_leadership AS l (holder, fencing_token, expires_at)
    VALUES (p_holder, 1, now() + p_lease)
    ON CONFLICT (singleton) DO UPDATE
        SET holder = EXCLUDED.holder, fencing_token = l.fencing_token + 1,
            acquired_at = now(), expires_at = EXCLUDED.expires_at
        WHERE l.expires_at < now() OR l.holder = p_holder
    RETURNING fencing_token
$$;

-- Extends the lease of the current leader; false once it was replaced or
-- let its lease run out (it must stand down then).
CREATE FUNCTION beat_renew(p_holder text, p_token bigint, p_lease interval) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    WITH renewed AS (
        UPDATE beat_leadership SET expires_at = now() + p_lease
        WHERE holder = p_holder AND fencing_token = p_token AND expires_at > now()
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM renewed)
$$;

-- Gives the lead up (a beat stopping): a standby takes it at its next try.
CREATE FUNCTION beat_release(p_holder text, p_token bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
    UPDATE beat_leadership SET expires_at = now()
    WHERE holder = p_holder AND fencing_token = p_token AND expires_at > now()
$$;

-- Claims a run of `p_task` for the leader holding `p_token`: raises
-- (SQLSTATE 'STB01') when that token no longer leads, so a replaced beat
-- writes nothing. The leadership row stays share-locked until the caller's
-- transaction ends, so a takeover waits for it. Returns the seconds until
-- the task is due: 0 when this call claimed the run (recorded now).
CREATE FUNCTION beat_claim_run(p_token bigint, p_task text, p_interval interval) RETURNS double precision
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    last timestamptz;
BEGIN
    PERFORM 1 FROM beat_leadership
    WHERE fencing_token = p_token AND expires_at > now()
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'beat fencing token % no longer leads', p_token USING ERRCODE = 'STB01';
    END IF;
    SELECT last_run_at INTO last FROM beat_schedule WHERE task = p_task FOR UPDATE;
    IF last IS NOT NULL AND last > now() - p_interval THEN
        RETURN extract(epoch FROM last + p_interval - now());
    END IF;
    INSERT INTO beat_schedule AS s (task, last_run_at, fencing_token) VALUES (p_task, now(), p_token)
    ON CONFLICT (task) DO UPDATE SET last_run_at = now(), fencing_token = p_token;
    RETURN 0;
END
$$;

-- Whether `p_token` still leads, share-locking the leadership row for the
-- caller's transaction (raises like beat_claim_run otherwise): the fence of
-- a write that is part of a claimed run.
CREATE FUNCTION beat_fence(p_token bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM beat_leadership
    WHERE fencing_token = p_token AND expires_at > now()
    FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'beat fencing token % no longer leads', p_token USING ERRCODE = 'STB01';
    END IF;
END
$$;

REVOKE ALL ON TABLE beat_leadership, beat_schedule FROM PUBLIC;
REVOKE ALL ON FUNCTION beat_acquire(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION beat_renew(text, bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION beat_release(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION beat_claim_run(bigint, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION beat_fence(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION beat_acquire(text, interval) TO stock_tracker_app;
GRANT EXECUTE ON FUNCTION beat_renew(text, bigint, interval) TO stock_tracker_app;
GRANT EXECUTE ON FUNCTION beat_release(text, bigint) TO stock_tracker_app;
GRANT EXECUTE ON FUNCTION beat_claim_run(bigint, text, interval) TO stock_tracker_app;
GRANT EXECUTE ON FUNCTION beat_fence(bigint) TO stock_tracker_app;
