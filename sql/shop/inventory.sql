-- The demo shop's stock: as listed below for the 24 named products, and a
-- made-up amount for every product beyond them (at least 2, so that any of
-- them can go in the cart). One statement, whatever the catalogue's size.
WITH named (product_id, stock) AS (VALUES
        (1, 12), (2, 8), (3, 15), (4, 5), (5, 9), (6, 20),
        (7, 4), (8, 11), (9, 6), (10, 25), (11, 30), (12, 7),
        (13, 14), (14, 18), (15, 3), (16, 40), (17, 50), (18, 2),
        (19, 5), (20, 16), (21, 10), (22, 13), (23, 8), (24, 35))
INSERT INTO inventory (product_id, stock, seeded_stock)
SELECT products.id, coalesce(named.stock, 2 + products.id * 7 % 48),
       coalesce(named.stock, 2 + products.id * 7 % 48)
FROM products LEFT JOIN named ON named.product_id = products.id
ORDER BY products.id;
