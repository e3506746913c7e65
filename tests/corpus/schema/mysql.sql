-- The shop's schema and catalogue (tests/workloads/shop_pg/) on MariaDB, for the
-- corpus's MariaDB stacks: the same tables, columns, 24 products and stock.
-- InnoDB, so that transactions and foreign keys behave as on PostgreSQL.
CREATE TABLE users (
    id            BIGINT AUTO_INCREMENT PRIMARY KEY,
    email         VARCHAR(255) NOT NULL UNIQUE,
    full_name     TEXT         NOT NULL,
    password_hash TEXT         NOT NULL,
    created_at    TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE = InnoDB;
CREATE TABLE categories (
    id   BIGINT PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE
) ENGINE = InnoDB;
CREATE TABLE products (
    id          BIGINT PRIMARY KEY,
    category_id BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    FOREIGN KEY (category_id) REFERENCES categories (id)
) ENGINE = InnoDB;
CREATE TABLE inventory (
    product_id   BIGINT PRIMARY KEY,
    stock        BIGINT NOT NULL CHECK (stock >= 0),
    seeded_stock BIGINT NOT NULL,
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB;
CREATE TABLE carts (
    id         BIGINT AUTO_INCREMENT PRIMARY KEY,
    user_id    BIGINT    NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB;
CREATE TABLE cart_items (
    id         BIGINT AUTO_INCREMENT PRIMARY KEY,
    cart_id    BIGINT NOT NULL,
    product_id BIGINT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    UNIQUE (cart_id, product_id),
    FOREIGN KEY (cart_id) REFERENCES carts (id),
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB;
CREATE TABLE orders (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    user_id     BIGINT      NOT NULL,
    status      VARCHAR(16) NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
    total_cents BIGINT      NOT NULL CHECK (total_cents >= 0),
    created_at  TIMESTAMP   NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB;
CREATE TABLE order_items (
    id               BIGINT AUTO_INCREMENT PRIMARY KEY,
    order_id         BIGINT NOT NULL,
    product_id       BIGINT NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    FOREIGN KEY (product_id) REFERENCES products (id)
) ENGINE = InnoDB;
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
INSERT INTO inventory (product_id, stock, seeded_stock) VALUES
    (1, 12, 12), (2, 8, 8), (3, 15, 15), (4, 5, 5), (5, 9, 9), (6, 20, 20),
    (7, 4, 4), (8, 11, 11), (9, 6, 6), (10, 25, 25), (11, 30, 30), (12, 7, 7),
    (13, 14, 14), (14, 18, 18), (15, 3, 3), (16, 40, 40), (17, 50, 50), (18, 2, 2),
    (19, 5, 5), (20, 16, 16), (21, 10, 10), (22, 13, 13), (23, 8, 8), (24, 35, 35);
