-- Costs that grow with a tenant's rows, not with everyone's.
--
-- Search: the trigram indexes now lead with tenant_id (btree_gin gives uuid a
-- GIN operator class), so `product_search` intersects the caller's entries
-- with the pattern's instead of reading every tenant's matches.
CREATE EXTENSION IF NOT EXISTS btree_gin;
DROP INDEX products_name_trgm_idx;
DROP INDEX products_sku_trgm_idx;
CREATE INDEX products_name_trgm_idx ON products USING gin (tenant_id, name gin_trgm_ops);
CREATE INDEX products_sku_trgm_idx ON products USING gin (tenant_id, sku gin_trgm_ops);

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
