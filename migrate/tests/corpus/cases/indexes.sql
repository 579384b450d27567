-- case: create-index
-- expect: blocks
-- why: CREATE INDEX holds SHARE on orders for the whole build: writers wait.
CREATE INDEX orders_symbol ON orders (symbol);
-- case: create-unique-index
-- expect: blocks
CREATE UNIQUE INDEX orders_id_ref ON orders (id, ref);
-- case: create-index-fills
-- expect: blocks
CREATE INDEX fills_order ON fills (order_id);
-- case: create-partial-index
-- expect: blocks
-- why: a partial index still reads every row.
CREATE INDEX orders_new ON orders (created_at) WHERE status = 'new';
-- case: create-index-ledger
-- expect: blocks
CREATE INDEX entries_order ON ledger.entries (order_id);
-- case: concurrently-in-transaction
-- expect: fails
CREATE INDEX CONCURRENTLY orders_symbol ON orders (symbol);
-- case: concurrently
-- expect: safe
-- file: no-transaction
SET statement_timeout = 0;
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_symbol ON orders (symbol);
-- case: concurrently-without-statement-timeout
-- expect: safe
-- file: no-transaction
-- why: the file sets no statement_timeout; cutover's lock_timeout still applies.
CREATE INDEX CONCURRENTLY orders_symbol ON orders (symbol);
-- case: unique-concurrently
-- expect: safe
-- file: no-transaction
CREATE UNIQUE INDEX CONCURRENTLY ticks_id ON ticks (id);
-- case: drop-index
-- expect: safe
-- why: ACCESS EXCLUSIVE for a moment: a warning, not a block.
DROP INDEX orders_account;
-- case: drop-index-concurrently-in-transaction
-- expect: fails
DROP INDEX CONCURRENTLY orders_account;
-- case: drop-index-concurrently
-- expect: safe
-- file: no-transaction
DROP INDEX CONCURRENTLY IF EXISTS orders_account;
-- case: index-on-new-table
-- expect: safe
CREATE TABLE venues (code text PRIMARY KEY, name text NOT NULL);
CREATE INDEX venues_name ON venues (name);
-- case: create-index-if-not-exists-on-existing-index
-- expect: safe
-- why: the index exists (fixture): IF NOT EXISTS makes the statement a no-op.
CREATE INDEX IF NOT EXISTS orders_account ON orders (account_id);
