-- case: update-every-row
-- expect: blocks
-- why: row locks on every account until commit: the live version's updates wait.
UPDATE accounts SET region = 'eu';
-- case: update-unbounded-where
-- expect: blocks
UPDATE orders SET venue = 'XLON' WHERE status = 'new';
-- case: update-batch-too-large
-- expect: blocks
-- why: 100 000 rows by key: a writer of one of them waits for the whole batch.
UPDATE orders SET venue = 'XLON' WHERE id BETWEEN 1 AND 100000;
-- case: update-by-key
-- expect: safe
UPDATE orders SET note = 'fixed' WHERE id = 42;
-- case: update-batch-between
-- expect: safe
UPDATE orders SET venue = 'XLON' WHERE id BETWEEN 500001 AND 501000;
-- case: update-batch-range
-- expect: safe
-- why: a batch of 1 000 rows by key holds its row locks for milliseconds.
UPDATE orders SET venue = 'XLON' WHERE id >= 700000 AND id < 701000;
-- case: update-in-list
-- expect: safe
UPDATE accounts SET region = 'us' WHERE id IN (101, 102, 103);
-- case: update-from-join
-- expect: blocks
UPDATE ledger.entries e SET memo = 'settled' FROM orders o WHERE o.id = e.order_id AND o.status = 'new';
-- case: delete-every-row
-- expect: blocks
DELETE FROM ledger.entries;
-- case: delete-unbounded-where
-- expect: blocks
DELETE FROM fills WHERE qty > 90;
-- case: delete-by-key
-- expect: safe
DELETE FROM ledger.entries WHERE id = 99999;
-- case: disable-triggers-around-backfill
-- expect: blocks
ALTER TABLE accounts DISABLE TRIGGER USER;
UPDATE accounts SET region = 'eu';
ALTER TABLE accounts ENABLE TRIGGER USER;
-- case: disable-and-enable-triggers
-- expect: safe
ALTER TABLE accounts DISABLE TRIGGER USER;
ALTER TABLE accounts ENABLE TRIGGER USER;
-- case: backfill-new-table
-- expect: safe
CREATE TABLE venues (code text PRIMARY KEY, name text);
INSERT INTO venues (code) VALUES ('XNAS'), ('XLON');
UPDATE venues SET name = code;
-- case: insert-select-small
-- expect: safe
INSERT INTO audit_log (event) SELECT 'order ' || id FROM orders WHERE id <= 1000;
-- case: backfill-no-transaction
-- expect: blocks
-- file: no-transaction
-- why: each statement commits on its own, but the UPDATE still locks every row it changes.
ALTER TABLE accounts ADD COLUMN tier text;
UPDATE accounts SET tier = 'gold';
-- case: delete-not-in-list
-- expect: breaks
-- why: NOT IN bounds nothing: every other row goes, the old release's rows with them.
DELETE FROM audit_log WHERE id NOT IN (1, 2);
