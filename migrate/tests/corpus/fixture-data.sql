-- The rows the oracle loads into the fixture (not a migration): tables large enough that a
-- scan, an index build or a rewrite holds its lock for well over the oracle's 100 ms. One
-- multi-statement string; the oracle runs VACUUM ANALYZE after it.
INSERT INTO accounts (id, name, region)
  SELECT g, 'acct ' || g, CASE WHEN g % 2 = 0 THEN 'eu' END FROM generate_series(1, 50000) g;
INSERT INTO orders (account_id, symbol, side, qty, price, status, note)
  SELECT 1 + g % 50000, 'SYM' || (g % 500), (CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END)::order_side,
         1 + g % 1000, (g % 10000) / 100.0, CASE WHEN g % 10 = 0 THEN 'new' ELSE 'filled' END, 'n' || g
  FROM generate_series(1, 2000000) g;
INSERT INTO fills (order_id, qty) SELECT g, 1 + g % 100 FROM generate_series(1, 3000000) g;
INSERT INTO ledger.entries (order_id, amount) SELECT g, g % 1000 FROM generate_series(1, 300000) g;
INSERT INTO ticks (id, seq, symbol, px) SELECT g, g, 'SYM' || (g % 500), g % 1000 FROM generate_series(1, 3000000) g;
INSERT INTO audit_log (event) SELECT 'boot ' || g FROM generate_series(1, 1000) g;
