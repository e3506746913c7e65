-- The demo shop's default catalogue (sql/shop/seed.sql, products.sql and
-- inventory.sql with their 24 named products) on PostgreSQL: the same
-- categories, products, prices and stock.
INSERT INTO categories (id, name) VALUES
    (1, 'Books'),
    (2, 'Kitchen'),
    (3, 'Garden'),
    (4, 'Toys');
INSERT INTO products (id, category_id, name, price_cents) VALUES
    (1, 1, 'The Pragmatic Programmer', 4200),
    (2, 1, 'Designing Data-Intensive Applications', 4900),
    (3, 1, 'SQL Performance Explained', 3500),
    (4, 1, 'The Art of PostgreSQL', 3900),
    (5, 1, 'Database Internals', 4500),
    (6, 1, 'Use The Index, Luke', 2900),
    (7, 2, 'Chef''s Knife', 8900),
    (8, 2, 'Cast Iron Skillet', 3900),
    (9, 2, 'Pour-Over Kettle', 5500),
    (10, 2, 'Cutting Board', 2500),
    (11, 2, 'Espresso Cups (set of 4)', 1900),
    (12, 2, 'Spice Rack', 3200),
    (13, 3, 'Pruning Shears', 2400),
    (14, 3, 'Watering Can', 1800),
    (15, 3, 'Raised Bed Kit', 12900),
    (16, 3, 'Seed Starter Tray', 1200),
    (17, 3, 'Garden Gloves', 900),
    (18, 3, 'Compost Bin', 6900),
    (19, 4, 'Wooden Train Set', 5900),
    (20, 4, 'Puzzle (1000 pieces)', 1900),
    (21, 4, 'Building Blocks', 3900),
    (22, 4, 'Kite', 2200),
    (23, 4, 'Board Game', 3400),
    (24, 4, 'Jump Rope', 700);
INSERT INTO inventory (product_id, stock, seeded_stock)
SELECT named.product_id, named.stock, named.stock
FROM (VALUES
        (1, 12), (2, 8), (3, 15), (4, 5), (5, 9), (6, 20),
        (7, 4), (8, 11), (9, 6), (10, 25), (11, 30), (12, 7),
        (13, 14), (14, 18), (15, 3), (16, 40), (17, 50), (18, 2),
        (19, 5), (20, 16), (21, 10), (22, 13), (23, 8), (24, 35))
    AS named (product_id, stock)
ORDER BY named.product_id;
