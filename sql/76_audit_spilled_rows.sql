-- Found in session 9 (measuring the users table's rename trigger): a
-- statement that writes more rows of a billing table than work_mem holds
-- crashed the server (signal 11). Its transition table spills to disk, and a
-- spilled tuplestore hands out each row palloc'd in the current memory
-- context for the slot to free; billing._audit read the rows in its chunk
-- context and reset that context after each chunk, with the chunk's last
-- row still in the slot, which then freed it a second time. Here a small
-- work_mem spills 3,000 rows (the attach's backfill, then an UPDATE of
-- all): the audit log holds one row per change, the server stays up.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS spill_app CASCADE;
RESET client_min_messages;
SET work_mem = '64kB';
CREATE EXTENSION billing;
CREATE SCHEMA spill_app;
CREATE TABLE spill_app.users (id text PRIMARY KEY);
INSERT INTO spill_app.users SELECT 'u' || i FROM pg_catalog.generate_series(1, 3000) i;
SELECT billing.attach_users('spill_app.users', 'id') AS backfilled;
UPDATE billing.subscriptions SET metadata = '{"spilled": true}' WHERE user_id LIKE 'u%';
SELECT action, count(*) FROM billing.audit_log WHERE table_name = 'subscriptions' GROUP BY action ORDER BY action;
SELECT count(*) AS history_rows FROM billing.subscription_history WHERE subscription_id IN
	(SELECT s.id FROM billing.subscriptions s WHERE s.user_id LIKE 'u%');
RESET work_mem;
SET client_min_messages = warning;
DROP SCHEMA spill_app CASCADE;
RESET client_min_messages;
