-- Catalog: marketplace connections (with encrypted credentials), products,
-- and their stock history.

-- Trigram matching for product search: names and SKUs are short, mixed-language
-- strings that users search by fragment ("iph", "AB-12"), which full-text
-- search (whole lexemes, language stemming) does not find. pg_trgm is a
-- trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE marketplace_connections (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind                   text NOT NULL CHECK (kind IN ('demo', 'wildberries')),
    name                   text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- Fernet token of the credentials JSON. Never returned, never logged.
    credentials_encrypted  text NOT NULL,
    last_synced_at         timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX marketplace_connections_tenant_idx ON marketplace_connections (tenant_id, id);

CREATE TABLE products (
    -- UUID v7: immutable and time-ordered, the default (and tie-breaking) sort key.
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- NULL for products entered by hand; synced products belong to a connection.
    marketplace_id  uuid REFERENCES marketplace_connections (id) ON DELETE CASCADE,
    sku             text NOT NULL CHECK (char_length(sku) BETWEEN 1 AND 100),
    name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 500),
    -- Money: exact decimal, never floating point.
    price           numeric(12, 2) NOT NULL CHECK (price >= 0),
    -- The price in cents, for filtering and sorting. Row-level security lets
    -- the planner use an index condition only with leakproof operators;
    -- bigint comparisons are, numeric ones are not. Kept by PostgreSQL.
    price_cents     bigint GENERATED ALWAYS AS ((price * 100)::bigint) STORED,
    stock           integer NOT NULL CHECK (stock >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- One SKU per tenant and marketplace; manual products (NULL marketplace) share one namespace.
    CONSTRAINT products_sku_key UNIQUE NULLS NOT DISTINCT (tenant_id, marketplace_id, sku)
);

-- One index per access path of the product list (each ends in id, the
-- tie-breaker of every cursor), so no list, filter or sort scans the table.
-- Under row-level security only leakproof operators become index conditions:
-- the queries compare uuid, text, bigint, integer and timestamptz columns,
-- and spell keyset conditions out instead of using row comparisons (which
-- are not leakproof).
CREATE INDEX products_tenant_id_idx ON products (tenant_id, id);
CREATE INDEX products_marketplace_idx ON products (tenant_id, marketplace_id, id);
CREATE INDEX products_updated_idx ON products (tenant_id, updated_at, id);
CREATE INDEX products_price_idx ON products (tenant_id, price_cents, id);
CREATE INDEX products_name_idx ON products (tenant_id, name, id);
CREATE INDEX products_stock_idx ON products (tenant_id, stock, id);
CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops);
CREATE INDEX products_sku_trgm_idx ON products USING gin (sku gin_trgm_ops);

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
);
CREATE INDEX product_stock_history_product_idx ON product_stock_history (tenant_id, product_id, id);

ALTER TABLE marketplace_connections ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON marketplace_connections
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

ALTER TABLE products ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON products
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

ALTER TABLE product_stock_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON product_stock_history
    USING (tenant_id = app_current_tenant_id())
    WITH CHECK (tenant_id = app_current_tenant_id());

GRANT SELECT, INSERT, UPDATE, DELETE
    ON marketplace_connections, products, product_stock_history TO stock_tracker_app;

-- Product search. ILIKE is not leakproof, so under row-level security the
-- trigram indexes could not serve it. This function matches inside the
-- caller's own tenant — the same app.tenant_id row-level security uses — with
-- the indexes, and returns ids only; the caller's query then reads those
-- rows under row-level security as usual.
CREATE FUNCTION product_search(p_pattern text) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
ROWS 1000
AS $$
    SELECT id FROM products
    WHERE tenant_id = app_current_tenant_id()
      AND (name ILIKE p_pattern OR sku ILIKE p_pattern)
$$;
REVOKE ALL ON FUNCTION product_search(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION product_search(text) TO stock_tracker_app;
