-- Beat purges credential state nothing can use any more, across tenants,
-- through this one narrow function (row-level security stays on elsewhere):
-- revoked access tokens whose expiry (plus the accepted clock leeway) has
-- passed — such a token is refused anyway — and refresh tokens expired for
-- longer than `p_keep` (kept that long so a stolen, spent token still
-- triggers reuse detection if presented soon after).
CREATE FUNCTION auth_purge_expired(p_leeway interval, p_keep interval)
RETURNS TABLE (revocations bigint, refresh_tokens bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
AS $$
DECLARE
    purged_revocations bigint;
    purged_refresh bigint;
BEGIN
    DELETE FROM revoked_access_tokens WHERE expires_at < now() - p_leeway;
    GET DIAGNOSTICS purged_revocations = ROW_COUNT;
    DELETE FROM refresh_tokens WHERE expires_at < now() - p_keep;
    GET DIAGNOSTICS purged_refresh = ROW_COUNT;
    RETURN QUERY SELECT purged_revocations, purged_refresh;
END
$$;
REVOKE ALL ON FUNCTION auth_purge_expired(interval, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_purge_expired(interval, interval) TO stock_tracker_app;
