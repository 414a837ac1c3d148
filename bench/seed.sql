-- Benchmark catalogue, run by bench/run.py as the postgres superuser (so
-- row-level security does not apply) once the tenants exist:
--   psql -v products_per_tenant=10000 -f bench/seed.sql
--
-- Every tenant gets `products_per_tenant` manual products (marketplace_id
-- NULL, so members may PATCH them) with realistic names, SKUs, prices and
-- stock, and three stock-history records each (the stock falling towards
-- today's level, as sales do). Ids are UUID v7 like the service's own, one
-- millisecond apart in creation order, so pages follow creation order.

BEGIN;

-- A UUID v7 for a given instant (PostgreSQL 15 has no uuidv7()): the random
-- v4 UUID's first 48 bits replaced by the Unix time in milliseconds, and its
-- version nibble turned from 4 (0100) into 7 (0111).
CREATE FUNCTION pg_temp.uuid_v7_at(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM at) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

CREATE TEMP TABLE bench_products ON COMMIT DROP AS
SELECT t.id AS tenant_id,
       n,
       now() - interval '30 days' + n * interval '1 millisecond' AS created_at
FROM tenants t
CROSS JOIN generate_series(1, :products_per_tenant) AS n;

INSERT INTO products (id, tenant_id, marketplace_id, sku, name, price, stock, created_at, updated_at)
SELECT pg_temp.uuid_v7_at(p.created_at),
       p.tenant_id,
       NULL,
       (ARRAY['ELC', 'HOM', 'APP', 'SPT', 'TOY', 'BTY', 'KIT', 'GRD'])[1 + p.n % 8]
           || '-' || lpad(p.n::text, 6, '0'),
       (ARRAY['Wireless', 'Organic', 'Compact', 'Premium', 'Classic', 'Ergonomic',
              'Waterproof', 'Vintage', 'Smart', 'Foldable', 'Heavy-duty', 'Eco'])[1 + p.n % 12]
           || ' '
           || (ARRAY['headphones', 'cotton T-shirt', 'kettle', 'yoga mat', 'backpack',
                     'desk lamp', 'phone case', 'coffee grinder', 'running shoes',
                     'face cream', 'garden hose', 'building blocks', 'frying pan',
                     'power bank', 'wool scarf'])[1 + (p.n / 12) % 15]
           || ', model ' || (100 + p.n % 900),
       round((2 + random() * 498)::numeric, 2),
       -- One product in twenty is out of stock.
       CASE WHEN p.n % 20 = 0 THEN 0 ELSE (random() * 500)::int END,
       p.created_at,
       -- Its last stock change (below) is ten days after its creation.
       p.created_at + interval '10 days'
FROM bench_products p;

-- Three records per product, oldest first: the first (no previous stock) 14
-- above today's level, then 7 above, then today's.
INSERT INTO product_stock_history (id, tenant_id, product_id, previous_stock, stock, source, recorded_at)
SELECT pg_temp.uuid_v7_at(h.recorded_at),
       h.tenant_id,
       h.product_id,
       CASE WHEN h.step = 1 THEN NULL ELSE h.stock + 7 END,
       h.stock,
       'manual',
       h.recorded_at
FROM (
    SELECT p.tenant_id,
           p.id AS product_id,
           step,
           p.stock + (3 - step) * 7 AS stock,
           p.created_at + (step - 1) * interval '5 days' AS recorded_at
    FROM products p
    CROSS JOIN generate_series(1, 3) AS step
) AS h;

COMMIT;

ANALYZE;
