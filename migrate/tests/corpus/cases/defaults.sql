-- case: random
-- expect: rewrites
ALTER TABLE accounts ADD COLUMN r double precision DEFAULT random();
-- case: gen-random-uuid
-- expect: rewrites
ALTER TABLE ledger.entries ADD COLUMN token uuid DEFAULT gen_random_uuid();
-- case: clock-timestamp
-- expect: rewrites
ALTER TABLE accounts ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp();
-- case: nextval
-- expect: rewrites
-- earlier:
CREATE SEQUENCE account_numbers;
-- migration:
ALTER TABLE accounts ADD COLUMN number bigint DEFAULT nextval('account_numbers');
-- case: user-function-volatile
-- expect: rewrites
-- why: next_ref() was created without a volatility: VOLATILE.
ALTER TABLE accounts ADD COLUMN ref text DEFAULT next_ref();
-- case: user-function-immutable
-- expect: safe
ALTER TABLE accounts ADD COLUMN fee numeric DEFAULT fee(10);
-- case: user-function-stable-from-earlier-migration
-- expect: safe
-- earlier:
CREATE FUNCTION desk() RETURNS text STABLE LANGUAGE sql AS $$ SELECT 'emea' $$;
-- migration:
ALTER TABLE orders ADD COLUMN desk text DEFAULT desk();
-- case: user-function-volatile-from-earlier-migration
-- expect: rewrites
-- why: PL/pgSQL: never inlined. (A LANGUAGE sql function whose body is a constant is inlined
-- by the planner and does not rewrite, whatever its declared volatility.)
-- earlier:
CREATE FUNCTION pick_desk() RETURNS text VOLATILE LANGUAGE plpgsql AS $$ BEGIN RETURN 'emea'; END $$;
-- migration:
ALTER TABLE accounts ADD COLUMN desk text DEFAULT pick_desk();
-- case: now
-- expect: safe
ALTER TABLE orders ADD COLUMN seen_at timestamptz DEFAULT now();
-- case: statement-timestamp
-- expect: safe
-- why: statement_timestamp() is STABLE: evaluated once, stored in the catalog.
ALTER TABLE orders ADD COLUMN seen_at timestamptz DEFAULT statement_timestamp();
-- case: current-timestamp
-- expect: safe
ALTER TABLE orders ADD COLUMN seen_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP;
-- case: constant-not-null
-- expect: safe
ALTER TABLE orders ADD COLUMN book text NOT NULL DEFAULT 'main';
-- case: constant-cast
-- expect: safe
ALTER TABLE orders ADD COLUMN attrs jsonb NOT NULL DEFAULT '{}'::jsonb;
-- case: immutable-expression
-- expect: safe
ALTER TABLE orders ADD COLUMN code text DEFAULT lower('XNAS') || '-1';
-- case: stable-to-char
-- expect: safe
ALTER TABLE accounts ADD COLUMN opened text DEFAULT to_char(now(), 'YYYY');
-- case: volatile-inside-expression
-- expect: rewrites
ALTER TABLE accounts ADD COLUMN salt text DEFAULT 'x' || random()::text;
-- case: set-volatile-default-on-existing-column
-- expect: safe
-- why: SET DEFAULT applies to new rows only.
ALTER TABLE orders ALTER COLUMN ref SET DEFAULT gen_random_uuid()::text;
