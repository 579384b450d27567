-- no-transaction
SET lock_timeout = '2s';
SET statement_timeout = '0';
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_symbol ON orders (symbol);
