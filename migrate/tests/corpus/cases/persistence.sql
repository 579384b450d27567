-- case: set-unlogged
-- expect: rewrites
ALTER TABLE fills SET UNLOGGED;
-- case: set-logged
-- expect: rewrites
-- earlier:
ALTER TABLE ledger.entries SET UNLOGGED;
-- migration:
ALTER TABLE ledger.entries SET LOGGED;
-- case: set-unlogged-new-table
-- expect: safe
CREATE TABLE scratch (id bigint PRIMARY KEY, v text);
ALTER TABLE scratch SET UNLOGGED;
-- case: vacuum-full
-- expect: rewrites
-- file: no-transaction
VACUUM FULL ledger.entries;
-- case: vacuum-full-in-transaction
-- expect: fails
VACUUM FULL ledger.entries;
-- case: vacuum-in-transaction
-- expect: fails
VACUUM accounts;
-- case: vacuum
-- expect: safe
-- file: no-transaction
VACUUM accounts;
-- case: analyze
-- expect: safe
ANALYZE orders;
-- case: cluster
-- expect: rewrites
CLUSTER ledger.entries USING entries_pkey;
