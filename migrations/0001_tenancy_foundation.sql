-- Tenancy foundation: the application role, tenants, users, and row-level security.
--
-- Why a separate role: PostgreSQL does not apply row-level security to a table's
-- owner or to superusers. Migrations run as the owner; the service runs its queries
-- as `stock_tracker_app`, which owns nothing and has neither SUPERUSER nor
-- BYPASSRLS, so every policy below really applies. The service switches to it with
-- `SET ROLE` on each new pooled connection, which also covers a development
-- `DATABASE_URL` that names a superuser. In production the login role is a member
-- of `stock_tracker_app` and owns nothing (README, "Database roles").
--
-- Roles are cluster-wide; create it only when missing so several databases
-- (and a migrator without CREATEROLE, where a DBA pre-created it) can share it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'stock_tracker_app') THEN
        CREATE ROLE stock_tracker_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION
    -- Two databases migrated at the same moment race on the role name.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- The tenant of the current transaction, or NULL when none is set.
-- The service sets it with `set_config('app.tenant_id', $1, true)`: a bind
-- parameter (no string formatting) and transaction-local (a session-level value
-- would leak to the next user of a pooled connection). After a transaction ends
-- the setting reads as '' rather than NULL, hence NULLIF.
CREATE FUNCTION app_current_tenant_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

-- A tenant is a marketplace seller (a company). Tiers select rate limits.
CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    tier        text NOT NULL DEFAULT 'free'
                CHECK (tier IN ('free', 'premium', 'enterprise', 'internal')),
    -- Tenant preferences (low-stock threshold, timezone, ...), validated by the service.
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    full_name       text NOT NULL DEFAULT '' CHECK (char_length(full_name) <= 200),
    password_hash   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Sign-in is by email alone, before the tenant is known, so an address
-- belongs to one account across all tenants; compared case-insensitively.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_tenant_id_idx ON users (tenant_id);

-- Row-level security: defense in depth behind the service's own tenant filters.
-- With no tenant set, app_current_tenant_id() is NULL, the comparison is NULL,
-- and no row is visible or writable.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = app_current_tenant_id())
    WITH CHECK (id = app_current_tenant_id());

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

GRANT USAGE ON SCHEMA public TO stock_tracker_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, users TO stock_tracker_app;
-- `serve` checks at start that every migration it knows is applied.
GRANT SELECT ON _sqlx_migrations TO stock_tracker_app;
