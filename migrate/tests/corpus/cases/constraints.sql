-- case: check
-- expect: blocks
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0);
-- case: check-not-valid
-- expect: safe
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
-- case: validate-check-added-earlier
-- expect: safe
-- why: the documented pattern across migrations: VALIDATE takes SHARE UPDATE EXCLUSIVE only.
-- earlier:
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
-- migration:
ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;
-- case: check-and-validate-in-one-transaction
-- expect: blocks
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;
-- case: check-and-validate-no-transaction
-- expect: safe
-- file: no-transaction
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT qty_positive;
-- case: foreign-key
-- expect: blocks
ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id);
-- case: foreign-key-not-valid
-- expect: safe
ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;
-- case: validate-foreign-key-added-earlier
-- expect: safe
-- earlier:
ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;
-- migration:
ALTER TABLE orders VALIDATE CONSTRAINT orders_account_fk;
-- case: foreign-key-and-validate-in-one-transaction
-- expect: blocks
ALTER TABLE orders ADD CONSTRAINT orders_account_fk FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT orders_account_fk;
-- case: set-not-null
-- expect: blocks
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
-- case: set-not-null-on-not-null-column
-- expect: safe
ALTER TABLE orders ALTER COLUMN symbol SET NOT NULL;
-- case: set-not-null-after-check-validated-earlier
-- expect: safe
-- earlier:
ALTER TABLE orders ADD CONSTRAINT note_not_null CHECK (note IS NOT NULL) NOT VALID;
-- earlier:
ALTER TABLE orders VALIDATE CONSTRAINT note_not_null;
-- migration:
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
-- case: set-not-null-pattern-in-one-transaction
-- expect: blocks
-- why: the pattern's VALIDATE scans while the first statement's ACCESS EXCLUSIVE lock is held.
ALTER TABLE orders ADD CONSTRAINT note_not_null CHECK (note IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT note_not_null;
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
-- case: set-not-null-pattern-no-transaction
-- expect: safe
-- file: no-transaction
ALTER TABLE orders ADD CONSTRAINT note_not_null CHECK (note IS NOT NULL) NOT VALID;
ALTER TABLE orders VALIDATE CONSTRAINT note_not_null;
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
-- case: set-not-null-with-unvalidated-check
-- expect: blocks
-- earlier:
ALTER TABLE orders ADD CONSTRAINT note_not_null CHECK (note IS NOT NULL) NOT VALID;
-- migration:
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
-- case: unique-constraint
-- expect: blocks
ALTER TABLE orders ADD CONSTRAINT orders_id_ref UNIQUE (id, ref);
-- case: unique-using-index
-- expect: safe
-- earlier:
-- no-transaction
CREATE UNIQUE INDEX CONCURRENTLY ticks_id_idx ON ticks (id);
-- migration:
ALTER TABLE ticks ADD CONSTRAINT ticks_id_key UNIQUE USING INDEX ticks_id_idx;
-- case: primary-key-using-index-nullable
-- expect: blocks
-- why: the primary key makes seq NOT NULL: a scan under ACCESS EXCLUSIVE.
-- earlier:
-- no-transaction
CREATE UNIQUE INDEX CONCURRENTLY ticks_seq_idx ON ticks (seq);
-- migration:
ALTER TABLE ticks ADD CONSTRAINT ticks_pkey PRIMARY KEY USING INDEX ticks_seq_idx;
-- case: primary-key-using-index-not-null
-- expect: safe
-- earlier:
-- no-transaction
CREATE UNIQUE INDEX CONCURRENTLY ticks_id_idx ON ticks (id);
-- migration:
ALTER TABLE ticks ADD CONSTRAINT ticks_pkey PRIMARY KEY USING INDEX ticks_id_idx;
-- case: primary-key-using-index-after-validated-check
-- expect: safe
-- earlier:
-- no-transaction
CREATE UNIQUE INDEX CONCURRENTLY ticks_seq_idx ON ticks (seq);
-- earlier:
-- no-transaction
ALTER TABLE ticks ADD CONSTRAINT seq_not_null CHECK (seq IS NOT NULL) NOT VALID;
ALTER TABLE ticks VALIDATE CONSTRAINT seq_not_null;
-- migration:
ALTER TABLE ticks ADD CONSTRAINT ticks_pkey PRIMARY KEY USING INDEX ticks_seq_idx;
-- case: primary-key
-- expect: blocks
ALTER TABLE ticks ADD PRIMARY KEY (id);
-- case: drop-constraint
-- expect: safe
-- earlier:
ALTER TABLE orders ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
-- migration:
ALTER TABLE orders DROP CONSTRAINT qty_positive;
-- case: drop-proving-check-then-set-not-null
-- expect: blocks
-- why: without the CHECK that proved it, SET NOT NULL scans again.
-- earlier:
ALTER TABLE orders ADD CONSTRAINT note_not_null CHECK (note IS NOT NULL) NOT VALID;
-- earlier:
ALTER TABLE orders VALIDATE CONSTRAINT note_not_null;
-- migration:
ALTER TABLE orders DROP CONSTRAINT note_not_null;
ALTER TABLE orders ALTER COLUMN note SET NOT NULL;
