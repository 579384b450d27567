-- case: domain-add-check
-- expect: blocks
-- why: every fills.qty is checked holding SHARE on fills: writers wait.
ALTER DOMAIN fill_qty ADD CONSTRAINT fill_qty_positive CHECK (VALUE > 0);
-- case: domain-add-check-not-valid
-- expect: safe
ALTER DOMAIN fill_qty ADD CONSTRAINT fill_qty_positive CHECK (VALUE > 0) NOT VALID;
-- case: domain-validate
-- expect: blocks
-- why: on PostgreSQL 15 VALIDATE CONSTRAINT on a domain also holds SHARE on the tables using it.
-- earlier:
ALTER DOMAIN fill_qty ADD CONSTRAINT fill_qty_positive CHECK (VALUE > 0) NOT VALID;
-- migration:
ALTER DOMAIN fill_qty VALIDATE CONSTRAINT fill_qty_positive;
-- case: domain-set-not-null
-- expect: blocks
ALTER DOMAIN fill_qty SET NOT NULL;
-- case: domain-unused
-- expect: safe
-- earlier:
CREATE DOMAIN ticker AS text;
-- migration:
ALTER DOMAIN ticker ADD CONSTRAINT ticker_len CHECK (length(VALUE) <= 12);
-- case: domain-new-in-file
-- expect: safe
CREATE DOMAIN price_tick AS numeric;
ALTER DOMAIN price_tick ADD CONSTRAINT tick_positive CHECK (VALUE > 0);
-- case: add-column-of-constrained-domain
-- expect: rewrites
-- why: PostgreSQL 15 checks a constrained domain on every row of the table (even a NULL one).
-- earlier:
ALTER DOMAIN fill_qty ADD CONSTRAINT fill_qty_positive CHECK (VALUE > 0) NOT VALID;
-- migration:
ALTER TABLE accounts ADD COLUMN default_qty fill_qty;
-- case: add-column-of-unconstrained-domain
-- expect: safe
ALTER TABLE accounts ADD COLUMN default_qty fill_qty;
