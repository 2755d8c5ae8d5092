-- One user id rule on every route (README walk W5): at most 255 bytes and
-- not empty, 22023 otherwise, from the core's one check. The users trigger,
-- attach_users' backfill, subscribe and record_usage all refuse a 256-byte
-- id (the trigger used to give it a Free subscription subscribe then
-- refused to replace; record_usage took up to 1000 bytes).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY default
CREATE SCHEMA uid_app;
CREATE TABLE uid_app.users (id text PRIMARY KEY);
INSERT INTO uid_app.users VALUES (repeat('a', 255)), (repeat('b', 256));
-- the backfill refuses the table while it holds a 256-byte id
SELECT billing.attach_users('uid_app.users', 'id');
DELETE FROM uid_app.users WHERE id = repeat('b', 256);
SELECT billing.attach_users('uid_app.users', 'id') AS backfilled;
-- the trigger: 255 bytes get Free, 256 are refused
INSERT INTO uid_app.users VALUES (repeat('c', 255));
INSERT INTO uid_app.users VALUES (repeat('d', 256));
SELECT left(user_id, 1) AS u, octet_length(user_id) AS bytes FROM billing.subscriptions ORDER BY user_id;
-- subscribe and record_usage: the same limit
SELECT octet_length(user_id) FROM billing.subscribe(repeat('c', 255), 'pro_monthly', now(), with_trial => false);
SELECT billing.subscribe(repeat('e', 256), 'pro_monthly');
SELECT octet_length(user_id) FROM billing.record_usage(repeat('e', 255), 'api_calls', 1, '2026-01-01');
SELECT billing.record_usage(repeat('e', 256), 'api_calls', 1, '2026-01-01');
SELECT billing.record_usage('', 'api_calls', 1, '2026-01-01');
-- (a multibyte id is counted in bytes)
SELECT billing.record_usage(repeat('é', 128), 'api_calls', 1, '2026-01-01');
-- the NULL argument is named
SELECT billing.record_usage('u', 'api_calls', NULL, '2026-01-01');
SET client_min_messages = warning;
-- billing first: a DROP of its users table is refused while it holds anything live (sql/180)
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
DROP SCHEMA uid_app CASCADE;
