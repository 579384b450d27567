-- case: lock-then-backfill-another-table
-- expect: blocks
-- why: the ACCESS EXCLUSIVE lock on orders is held while accounts is updated.
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;
UPDATE accounts SET region = 'eu';
-- case: lock-then-catalog-change
-- expect: safe
LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;
ALTER TABLE orders ADD COLUMN flag boolean;
-- case: lock-share-row-exclusive-then-validate
-- expect: blocks
-- earlier:
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
-- migration:
LOCK TABLE orders IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;
-- case: lock-access-share-then-copy
-- expect: safe
LOCK TABLE orders IN ACCESS SHARE MODE;
CREATE TABLE orders_copy AS SELECT id, symbol FROM orders;
-- case: lock-exclusive-then-copy
-- expect: blocks
LOCK TABLE orders IN EXCLUSIVE MODE;
CREATE TABLE orders_copy AS SELECT id, symbol FROM orders;
-- case: lock-nowait-then-update-by-key
-- expect: safe
LOCK TABLE accounts IN SHARE MODE NOWAIT;
UPDATE accounts SET name = 'renamed' WHERE id = 7;
-- case: lock-share-then-copy
-- expect: blocks
LOCK TABLE fills IN SHARE MODE;
CREATE TABLE fills_copy AS SELECT * FROM fills;
