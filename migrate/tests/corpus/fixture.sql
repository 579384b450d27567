-- The schema every corpus case starts from: migration 1 for the check (its history), and the
-- database the oracle (tests/tests/migration_oracle.rs) copies for each case, with the rows of
-- fixture-data.sql. The previous release's queries are the oracle's OLD_RELEASE list.
CREATE TYPE order_side AS ENUM ('buy', 'sell');
CREATE DOMAIN fill_qty AS integer;
CREATE SCHEMA ledger;
CREATE FUNCTION fee(q integer) RETURNS numeric IMMUTABLE LANGUAGE sql AS $$ SELECT q * 0.01 $$;
CREATE FUNCTION next_ref() RETURNS text LANGUAGE sql AS $$ SELECT md5(random()::text) $$;
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    region text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL,
    symbol varchar(12) NOT NULL,
    side order_side NOT NULL,
    qty integer NOT NULL,
    price numeric(12,4) NOT NULL,
    status text NOT NULL DEFAULT 'new',
    note varchar(64),
    venue text DEFAULT 'XNAS',
    ref text,
    created_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX orders_account ON orders (account_id);
CREATE TABLE fills (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    qty fill_qty NOT NULL,
    filled_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ledger.entries (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    amount numeric(14,2) NOT NULL,
    memo text
);
CREATE TABLE ticks (
    id bigint NOT NULL,
    seq bigint,
    symbol text NOT NULL,
    px numeric
);
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL
);
CREATE VIEW open_orders AS SELECT id, symbol FROM orders WHERE status = 'new';
