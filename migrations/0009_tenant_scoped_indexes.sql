-- Costs that grow with a tenant's rows, not with everyone's.
--
-- Search: the trigram indexes now lead with tenant_id (btree_gin gives uuid a
-- GIN operator class), so `product_search` intersects the caller's entries
-- with the pattern's instead of reading every tenant's matches. They index
-- lower(column), not the column: pg_trgm also answers `=` on an indexed
-- column, and the planner then preferred these indexes for the sync's
-- `sku = ...` lookups — a probe whose trigrams ("sku", "ku-") every product
-- shares, so each synced page read the whole tenant. No query compares
-- lower(sku) for equality, so only the search uses them.
CREATE EXTENSION IF NOT EXISTS btree_gin;
DROP INDEX products_name_trgm_idx;
DROP INDEX products_sku_trgm_idx;
CREATE INDEX products_name_trgm_idx ON products USING gin (tenant_id, lower(name) gin_trgm_ops);
CREATE INDEX products_sku_trgm_idx ON products USING gin (tenant_id, lower(sku) gin_trgm_ops);

-- The search, on what the indexes hold: lower(column) LIKE lower(pattern)
-- is the case-insensitive match ILIKE made.
CREATE OR REPLACE FUNCTION product_search(p_pattern text) RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
ROWS 1000
AS $$
    SELECT id FROM products
    WHERE tenant_id = app_current_tenant_id()
      AND (lower(name) LIKE lower(p_pattern) OR lower(sku) LIKE lower(p_pattern))
$$;

-- Foreign keys without an index led by their column: deleting (or checking)
-- one parent — a product, a marketplace connection, a user, a tenant — made
-- PostgreSQL scan the child table. Each now has one (a test checks that every
-- foreign key does).
CREATE INDEX products_marketplace_id_idx ON products (marketplace_id);
CREATE INDEX product_stock_history_product_id_idx ON product_stock_history (product_id, id);
CREATE INDEX sync_jobs_connection_idx ON sync_jobs (connection_id, id);
CREATE INDEX refresh_tokens_tenant_idx ON refresh_tokens (tenant_id);
CREATE INDEX revoked_access_tokens_tenant_idx ON revoked_access_tokens (tenant_id);
CREATE INDEX revoked_access_tokens_user_idx ON revoked_access_tokens (user_id);
