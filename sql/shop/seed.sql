-- The demo shop's categories. Its products come from products.sql and their
-- stock from inventory.sql, run after this file.
INSERT INTO categories (id, name) VALUES
    (1, 'Books'),
    (2, 'Kitchen'),
    (3, 'Garden'),
    (4, 'Toys');
