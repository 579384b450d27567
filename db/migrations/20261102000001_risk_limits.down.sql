ALTER TABLE orders DROP COLUMN venue;
DROP TABLE risk_limits;
