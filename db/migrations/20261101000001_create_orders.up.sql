SET lock_timeout = '2s';
SET statement_timeout = '30s';
CREATE TABLE accounts (
  id bigint PRIMARY KEY,
  name text NOT NULL
);
CREATE TABLE orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id),
  symbol varchar(16) NOT NULL,
  side text NOT NULL CHECK (side IN ('buy', 'sell')),
  qty integer NOT NULL CHECK (qty > 0),
  price numeric(18, 6) NOT NULL,
  note text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_account ON orders (account_id);
