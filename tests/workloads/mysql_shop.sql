-- A shop's journey for MySQL / MariaDB, run with `mysql --comments` (one
-- connection, and --comments keeps the sqlcommenter tags). Markers name the
-- steps. It has an N+1 (browse: a prepared lookup per product, executed with
-- values), a repeated query (cart) and a multi-line statement. Expected, per
-- step (statements / queries): setup 4/4, browse 14/8, cart 2/2,
-- cart_lookup 1/1, checkout 3/1. Findings: n-plus-one in browse,
-- repeated-query in cart. (No semicolon in these comments: the client splits
-- statements there, comments included.)
SET @flowaudit_flow = 'shop';
SET @flowaudit_step = 'setup';
CREATE TABLE products (id int PRIMARY KEY, name text);
CREATE TABLE inventory (product_id int, stock int);
INSERT INTO products VALUES (1, 'product 1'), (2, 'product 2'), (3, 'product 3'), (4, 'product 4'), (5, 'product 5'), (6, 'product 6');
INSERT INTO inventory SELECT id, id * 10 FROM products;
SET @flowaudit_step = 'browse';
SELECT id, name FROM products ORDER BY id;
PREPARE stock FROM 'SELECT stock FROM inventory WHERE product_id = ?';
SET @p = 1; EXECUTE stock USING @p;
SET @p = 2; EXECUTE stock USING @p;
SET @p = 3; EXECUTE stock USING @p;
SET @p = 4; EXECUTE stock USING @p;
SET @p = 5; EXECUTE stock USING @p;
SET @p = 6; EXECUTE stock USING @p;
SET @flowaudit_step = 'cart';
SELECT name
  FROM products
 WHERE id = 2 /*step='cart_lookup'*/;
SELECT name FROM products WHERE id = 3;
SELECT name FROM products WHERE id = 3;
SET @flowaudit_step = 'checkout';
START TRANSACTION;
UPDATE inventory SET stock = stock - 1 WHERE product_id = 2;
COMMIT;
