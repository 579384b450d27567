-- case: add-column-then-backfill
-- expect: blocks
-- why: ADD COLUMN's ACCESS EXCLUSIVE lock is held while the UPDATE runs: reads wait too.
ALTER TABLE accounts ADD COLUMN tier text;
UPDATE accounts SET tier = 'gold';
-- case: catalog-change-then-copy-of-another-table
-- expect: blocks
ALTER TABLE accounts ADD COLUMN tier text;
CREATE TABLE orders_copy AS SELECT id, symbol FROM orders;
-- case: set-default-then-validate
-- expect: blocks
-- earlier:
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
-- migration:
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'open';
ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;
-- case: validate-then-catalog-change
-- expect: safe
-- why: VALIDATE runs before any blocking lock is taken; the ADD COLUMN after it is instant.
-- earlier:
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
-- migration:
ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;
ALTER TABLE orders ADD COLUMN checked boolean;
-- case: two-catalog-changes
-- expect: safe
ALTER TABLE orders ADD COLUMN a integer;
ALTER TABLE accounts ADD COLUMN b integer;
-- case: catalog-change-then-index-build
-- expect: blocks
ALTER TABLE fills ADD COLUMN src text;
CREATE INDEX fills_order ON fills (order_id);
-- case: catalog-change-then-copy-no-transaction
-- expect: safe
-- file: no-transaction
ALTER TABLE accounts ADD COLUMN tier text;
CREATE TABLE orders_copy AS SELECT id, symbol FROM orders;
-- case: foreign-key-not-valid-then-copy
-- expect: blocks
-- why: the NOT VALID key still holds SHARE ROW EXCLUSIVE on both tables until commit.
ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;
CREATE TABLE fills_copy AS SELECT * FROM fills;
