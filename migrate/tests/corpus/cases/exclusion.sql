-- case: exclusion-constraint
-- expect: blocks
ALTER TABLE orders ADD CONSTRAINT orders_ref_excl EXCLUDE USING btree (ref WITH =);
-- case: exclusion-constraint-fills
-- expect: blocks
ALTER TABLE fills ADD CONSTRAINT fills_id_excl EXCLUDE USING btree (id WITH =);
-- case: partial-exclusion-constraint
-- expect: blocks
-- why: the index is partial, but building it reads every row under ACCESS EXCLUSIVE.
ALTER TABLE orders ADD CONSTRAINT one_open_per_account EXCLUDE USING btree (account_id WITH =) WHERE (status = 'open');
-- case: exclusion-constraint-new-table
-- expect: safe
CREATE TABLE bookings (desk text NOT NULL, day date NOT NULL);
ALTER TABLE bookings ADD CONSTRAINT one_booking EXCLUDE USING btree (desk WITH =, day WITH =);
