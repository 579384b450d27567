SET lock_timeout = '2s';
SET statement_timeout = '30s';
CREATE TABLE risk_limits (
  account_id bigint PRIMARY KEY REFERENCES accounts (id),
  max_notional numeric(18, 2) NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE orders ADD COLUMN venue text NOT NULL DEFAULT 'XNAS';
