-- case: drop-column
-- expect: breaks
ALTER TABLE orders DROP COLUMN note;
-- case: drop-column-in-contract-file
-- expect: breaks
-- file: contract
-- why: allowed in a contract file: the previous release is gone by then (the oracle still runs it).
ALTER TABLE orders DROP COLUMN note;
-- case: drop-table
-- expect: breaks
DROP TABLE ledger.entries;
-- case: drop-view
-- expect: breaks
DROP VIEW open_orders;
-- case: drop-view-in-contract-file
-- expect: breaks
-- file: contract
DROP VIEW open_orders;
-- case: rename-column
-- expect: breaks
ALTER TABLE orders RENAME COLUMN qty TO quantity;
-- case: rename-table
-- expect: breaks
ALTER TABLE fills RENAME TO executions;
-- case: rename-view
-- expect: breaks
ALTER VIEW open_orders RENAME TO pending_orders;
-- case: rename-schema
-- expect: breaks
ALTER SCHEMA ledger RENAME TO books;
-- case: rename-enum-value
-- expect: breaks
ALTER TYPE order_side RENAME VALUE 'buy' TO 'bid';
-- case: add-enum-value
-- expect: safe
ALTER TYPE order_side ADD VALUE 'short';
-- case: drop-default-of-not-null-column
-- expect: breaks
-- why: the previous release inserts orders without a status.
ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;
-- case: drop-default-of-nullable-column
-- expect: safe
ALTER TABLE orders ALTER COLUMN venue DROP DEFAULT;
-- case: truncate
-- expect: breaks
TRUNCATE ledger.entries;
-- case: truncate-cascade
-- expect: breaks
TRUNCATE audit_log CASCADE;
-- case: move-table-to-another-schema
-- expect: breaks
ALTER TABLE fills SET SCHEMA ledger;
-- case: replace-view-adding-a-column
-- expect: safe
CREATE OR REPLACE VIEW open_orders AS SELECT id, symbol, qty FROM orders WHERE status = 'new';
-- case: create-view
-- expect: safe
CREATE VIEW big_orders AS SELECT id, qty FROM orders WHERE qty > 900;
