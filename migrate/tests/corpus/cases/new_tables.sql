-- case: create-table-with-index-and-keys
-- expect: safe
CREATE TABLE venues (id bigint PRIMARY KEY, code text NOT NULL, account_id bigint REFERENCES accounts (id));
CREATE INDEX venues_code ON venues (code);
ALTER TABLE venues ADD CONSTRAINT code_len CHECK (length(code) <= 8);
-- case: create-if-not-exists-on-existing-table
-- expect: blocks
-- why: IF NOT EXISTS on orders does nothing: the index is built on the live, full table.
CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY);
CREATE INDEX orders_symbol ON orders (symbol);
-- case: create-if-not-exists-new-table
-- expect: safe
CREATE TABLE IF NOT EXISTS venues (code text PRIMARY KEY, name text);
CREATE INDEX venues_name ON venues (name);
-- case: same-name-in-another-schema
-- expect: blocks
-- why: ledger.orders is new; the index goes on public.orders.
CREATE TABLE ledger.orders (id bigint PRIMARY KEY, symbol text);
CREATE INDEX orders_symbol ON orders (symbol);
-- case: index-on-new-table-in-another-schema
-- expect: safe
CREATE TABLE ledger.orders (id bigint PRIMARY KEY, symbol text);
CREATE INDEX ledger_orders_symbol ON ledger.orders (symbol);
-- case: create-table-as-then-index
-- expect: safe
CREATE TABLE orders_recent AS SELECT id, symbol FROM orders WHERE id <= 100000;
CREATE INDEX orders_recent_symbol ON orders_recent (symbol);
ALTER TABLE orders_recent ADD PRIMARY KEY (id);
-- case: create-table-as-then-not-null
-- expect: safe
CREATE TABLE orders_recent AS SELECT id, symbol FROM orders WHERE id <= 100000;
ALTER TABLE orders_recent ALTER COLUMN symbol SET NOT NULL;
-- case: create-table-like
-- expect: safe
CREATE TABLE orders_archive (LIKE orders INCLUDING DEFAULTS);
CREATE INDEX orders_archive_symbol ON orders_archive (symbol);
-- case: new-table-referencing-orders
-- expect: safe
CREATE TABLE order_tags (order_id bigint NOT NULL REFERENCES orders (id), tag text NOT NULL);
CREATE INDEX order_tags_order ON order_tags (order_id);
-- case: schema-qualified-new-table-then-unqualified-other
-- expect: blocks
CREATE TABLE ledger.fills (id bigint PRIMARY KEY);
ALTER TABLE fills ADD CONSTRAINT fills_qty_positive CHECK (qty > 0);
