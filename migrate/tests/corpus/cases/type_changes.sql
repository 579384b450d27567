-- case: integer-to-bigint
-- expect: rewrites
ALTER TABLE orders ALTER COLUMN qty TYPE bigint;
-- case: widen-varchar
-- expect: safe
ALTER TABLE orders ALTER COLUMN note TYPE varchar(128);
-- case: shorten-varchar
-- expect: rewrites
ALTER TABLE orders ALTER COLUMN note TYPE varchar(32);
-- case: varchar-to-text
-- expect: safe
ALTER TABLE orders ALTER COLUMN note TYPE text;
-- case: varchar-to-unbounded-varchar
-- expect: safe
ALTER TABLE orders ALTER COLUMN note TYPE varchar;
-- case: text-to-varchar
-- expect: rewrites
ALTER TABLE orders ALTER COLUMN venue TYPE varchar(16);
-- case: raise-numeric-precision
-- expect: safe
ALTER TABLE orders ALTER COLUMN price TYPE numeric(16,4);
-- case: change-numeric-scale
-- expect: rewrites
ALTER TABLE orders ALTER COLUMN price TYPE numeric(12,2);
-- case: numeric-to-unconstrained
-- expect: safe
ALTER TABLE orders ALTER COLUMN price TYPE numeric;
-- case: timestamp-to-timestamptz-utc
-- expect: safe
-- why: no rewrite when the session TimeZone is UTC (the oracle's server runs in UTC); a warning.
ALTER TABLE orders ALTER COLUMN created_at TYPE timestamptz;
-- case: integer-to-text
-- expect: rewrites
ALTER TABLE orders ALTER COLUMN qty TYPE text;
-- case: using-clause
-- expect: rewrites
ALTER TABLE orders ALTER COLUMN qty TYPE integer USING qty + 0;
-- case: column-read-by-a-view
-- expect: fails
ALTER TABLE orders ALTER COLUMN symbol TYPE varchar(20);
-- case: widen-ledger-amount
-- expect: safe
ALTER TABLE ledger.entries ALTER COLUMN amount TYPE numeric(18,2);
-- case: bigint-to-integer
-- expect: rewrites
ALTER TABLE orders ALTER COLUMN account_id TYPE integer;
-- case: type-change-on-new-table
-- expect: safe
CREATE TABLE venues (code varchar(4) PRIMARY KEY);
ALTER TABLE venues ALTER COLUMN code TYPE varchar(8);
-- case: timestamp-to-timestamptz-indexed
-- expect: blocks
-- why: no table rewrite in UTC, but the index on the column is rebuilt under ACCESS EXCLUSIVE.
-- earlier:
-- no-transaction
CREATE INDEX CONCURRENTLY orders_created ON orders (created_at);
-- migration:
ALTER TABLE orders ALTER COLUMN created_at TYPE timestamptz;
