-- case: add-nullable
-- expect: safe
ALTER TABLE orders ADD COLUMN tag text;
-- case: add-not-null-with-default
-- expect: safe
ALTER TABLE orders ADD COLUMN priority integer NOT NULL DEFAULT 0;
-- case: add-not-null-without-default
-- expect: fails
ALTER TABLE orders ADD COLUMN priority integer NOT NULL;
-- case: add-stored-generated
-- expect: rewrites
ALTER TABLE orders ADD COLUMN notional numeric GENERATED ALWAYS AS (qty * price) STORED;
-- case: add-with-inline-check
-- expect: blocks
-- why: no rewrite (constant default), but the CHECK is tested on every row under ACCESS EXCLUSIVE.
ALTER TABLE orders ADD COLUMN lot integer DEFAULT 1 CHECK (lot > 0);
-- case: add-unique-column
-- expect: blocks
ALTER TABLE orders ADD COLUMN ext_id text UNIQUE;
-- case: add-foreign-key-column-without-default
-- expect: safe
-- why: every value is NULL: PostgreSQL adds the key without checking rows.
ALTER TABLE orders ADD COLUMN parent_account bigint REFERENCES accounts (id);
-- case: add-foreign-key-column-with-default
-- expect: blocks
ALTER TABLE orders ADD COLUMN parent_account bigint DEFAULT 1 REFERENCES accounts (id);
-- case: add-columns-to-new-table
-- expect: safe
CREATE TABLE venues (code text PRIMARY KEY);
ALTER TABLE venues ADD COLUMN opened timestamptz NOT NULL DEFAULT clock_timestamp(), ADD COLUMN mic text NOT NULL;
-- case: add-several-columns
-- expect: safe
ALTER TABLE orders ADD COLUMN a text, ADD COLUMN b integer DEFAULT 0;
-- case: drop-not-null
-- expect: safe
-- why: old queries still work (a warning: the new version may write NULLs the old does not expect).
ALTER TABLE orders ALTER COLUMN account_id DROP NOT NULL;
-- case: set-default-constant
-- expect: safe
ALTER TABLE orders ALTER COLUMN venue SET DEFAULT 'XLON';
