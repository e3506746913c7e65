-- The demo shop's products, ?1 of them (flowaudit demo --products N). Up to
-- 24, they are the named ones below, dealt out over the four categories in
-- turn (1, 7, 13, 19, 2, 8, …), so that every catalogue of 4 or more products
-- holds all four categories and the shopper's products 7 and 19. Beyond 24,
-- made-up products follow, again dealt out over the categories in turn. One
-- statement, whatever ?1.
WITH RECURSIVE
    named (id, category_id, name, price_cents) AS (VALUES
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
        (24, 4, 'Jump Rope', 700)),
    dealt (id, category_id, name, price_cents, turn) AS (
        SELECT named.id, named.category_id, named.name, named.price_cents,
               row_number() OVER (PARTITION BY named.category_id ORDER BY named.id)
        FROM named),
    more (id) AS (
        SELECT 25
        UNION ALL
        SELECT more.id + 1 FROM more WHERE more.id < ?1)
INSERT INTO products (id, category_id, name, price_cents)
SELECT dealt.id, dealt.category_id, dealt.name, dealt.price_cents
FROM dealt WHERE (dealt.turn - 1) * 4 + dealt.category_id <= ?1
UNION ALL
SELECT more.id, categories.id, categories.name || ' item ' || more.id,
       (5 + more.id * 37 % 120) * 100
FROM more JOIN categories ON categories.id = (more.id - 1) % 4 + 1
WHERE more.id <= ?1
ORDER BY 1;
