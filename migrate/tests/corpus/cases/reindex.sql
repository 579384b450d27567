-- case: reindex-index
-- expect: blocks
-- why: SHARE on the table, ACCESS EXCLUSIVE on the index: writers and planners wait.
REINDEX INDEX orders_account;
-- case: reindex-table
-- expect: blocks
REINDEX TABLE fills;
-- case: reindex-primary-key
-- expect: blocks
REINDEX INDEX orders_pkey;
-- case: reindex-ledger-table
-- expect: blocks
REINDEX TABLE ledger.entries;
-- case: reindex-concurrently-in-transaction
-- expect: fails
REINDEX INDEX CONCURRENTLY orders_account;
-- case: reindex-index-concurrently
-- expect: safe
-- file: no-transaction
REINDEX INDEX CONCURRENTLY orders_account;
-- case: reindex-table-concurrently
-- expect: safe
-- file: no-transaction
REINDEX TABLE CONCURRENTLY ledger.entries;
-- case: reindex-new-table
-- expect: safe
CREATE TABLE venues (code text PRIMARY KEY);
REINDEX TABLE venues;
