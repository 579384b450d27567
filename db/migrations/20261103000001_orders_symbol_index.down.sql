-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS orders_symbol;
