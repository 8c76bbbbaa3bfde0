-- Demo data for the shop stack: 3 tenants (acme, globex, initech), 10 users each (password
-- "demo", bcrypt via pgcrypto), 100,000 products and 100,000 orders over the last 60 days.
-- ONE transaction; does nothing when tenants already exist. Run as role shop:
--   docker compose -p shop -f demo/compose.yaml exec -T db \
--     psql -X -v ON_ERROR_STOP=1 -U shop -d shop -f /usr/local/share/shop/seed.sql
\set ON_ERROR_STOP on
BEGIN;
-- Two concurrent seeders: the second waits here, then finds the data and does nothing.
SELECT pg_advisory_xact_lock(7270001) \gset

DO $seed$
DECLARE
    adjectives text[] := ARRAY['Red', 'Blue', 'Green', 'Black', 'Silver', 'Golden', 'Compact',
        'Heavy', 'Smart', 'Wireless', 'Ergonomic', 'Rugged', 'Classic', 'Modern', 'Organic',
        'Premium', 'Portable', 'Quiet', 'Rapid', 'Solar'];
    nouns text[] := ARRAY['Widget', 'Gadget', 'Sprocket', 'Gizmo', 'Lamp', 'Chair', 'Desk',
        'Kettle', 'Backpack', 'Keyboard', 'Mouse', 'Monitor', 'Speaker', 'Headset', 'Drill',
        'Hammer', 'Bottle', 'Notebook', 'Pen', 'Stapler', 'Router', 'Cable', 'Charger', 'Tent',
        'Jacket', 'Boots', 'Mug', 'Blender', 'Toaster', 'Scanner'];
    models text[] := ARRAY['Mini', 'Pro', 'Max', 'Lite', 'XL', '2000', 'Plus', 'Classic'];
    usernames text[] := ARRAY['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace',
        'heidi', 'ivan', 'judy'];
    n_products bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM tenants) THEN
        RAISE NOTICE 'seed: already seeded (% tenants, % products, % orders); nothing to do',
            (SELECT count(*) FROM tenants), (SELECT count(*) FROM products),
            (SELECT count(*) FROM orders);
        RETURN;
    END IF;

    INSERT INTO tenants (slug, name, created_at) VALUES
        ('acme', 'Acme Corporation', now() - interval '400 days'),
        ('globex', 'Globex Inc.', now() - interval '300 days'),
        ('initech', 'Initech LLC', now() - interval '200 days');

    INSERT INTO users (tenant_id, username, email, password_hash, created_at)
    SELECT t.id, u.name, u.name || '@' || t.slug || '.example',
           crypt('demo', gen_salt('bf', 8)), t.created_at + (u.n * interval '3 days')
    FROM tenants t
    CROSS JOIN unnest(usernames) WITH ORDINALITY AS u(name, n);

    -- acme 50k, globex 30k, initech 20k products.
    INSERT INTO products (tenant_id, sku, name, description, price_cents, stock, created_at)
    SELECT t.id,
           upper(t.slug) || '-' || lpad(g::text, 6, '0'),
           adjectives[1 + g % 20] || ' ' || nouns[1 + (g / 20) % 30] || ' '
               || models[1 + (g / 600) % 8],
           'The ' || lower(adjectives[1 + g % 20]) || ' ' || lower(nouns[1 + (g / 20) % 30])
               || ' for everyday work. Batch ' || md5(t.slug || g) || '.',
           (199 + floor(random() * 49800))::int,
           floor(random() * 500)::int,
           t.created_at + random() * (now() - t.created_at)
    FROM tenants t
    CROSS JOIN LATERAL generate_series(1, CASE t.slug WHEN 'acme' THEN 50000
                                                      WHEN 'globex' THEN 30000
                                                      ELSE 20000 END) AS g;

    CREATE TEMP TABLE seed_products ON COMMIT DROP AS
        SELECT row_number() OVER (ORDER BY id) AS rn, id, tenant_id, price_cents FROM products;
    CREATE TEMP TABLE seed_users ON COMMIT DROP AS
        SELECT row_number() OVER (PARTITION BY tenant_id ORDER BY id) AS rn, id, tenant_id
        FROM users;
    ANALYZE seed_products;
    ANALYZE seed_users;
    SELECT count(*) INTO n_products FROM seed_products;

    -- 100k orders over the last 60 days, more of them recently (a growing shop).
    INSERT INTO orders (tenant_id, user_id, product_id, quantity, unit_price_cents, status,
                        created_at)
    SELECT p.tenant_id, u.id, p.id, s.quantity, p.price_cents,
           CASE WHEN s.r < 0.80 THEN 'paid' WHEN s.r < 0.92 THEN 'shipped'
                WHEN s.r < 0.97 THEN 'pending' ELSE 'refunded' END,
           now() - interval '60 days' * power(s.age, 1.3)
    FROM (SELECT g,
                 1 + floor(random() * n_products)::bigint AS prn,
                 1 + floor(random() * 10)::bigint AS urn,
                 1 + floor(power(random(), 3) * 5)::int AS quantity,
                 random() AS r,
                 random() AS age
          FROM generate_series(1, 100000) AS g) AS s
    JOIN seed_products p ON p.rn = s.prn
    JOIN seed_users u ON u.tenant_id = p.tenant_id AND u.rn = s.urn;

    ANALYZE tenants;
    ANALYZE users;
    ANALYZE products;
    ANALYZE orders;
    RAISE NOTICE 'seed: loaded % tenants, % users, % products, % orders',
        (SELECT count(*) FROM tenants), (SELECT count(*) FROM users),
        (SELECT count(*) FROM products), (SELECT count(*) FROM orders);
END
$seed$;

COMMIT;
