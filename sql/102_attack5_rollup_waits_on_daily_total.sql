-- Attack (session 10 review 5, finding 5.3): 5.2 again through the daily
-- totals. A quota counter's first count of a new day moves the previous
-- day's pending count into billing.usage_daily (the slow path, run in the
-- inserting transaction: INSERT ... ON CONFLICT DO UPDATE of the owner's
-- (user, metric, day) total, row-locked or newly inserted until commit).
-- billing_app joins a participant to one of x5's two rooms after midnight,
-- before the nightly run, and never ends the transaction: the run's rollup
-- adds the other room's count to the same total and waits for ever.
-- ("Yesterday" is simulated by moving the counters' day back, as the
-- isolation spec usage_counter_day_close does.)
-- SAFE outcome (this expected file): run_maintenance completes while the
-- app's transaction is open; after it commits, the next run rolls all three
-- joins up (nothing left pending) and usage() counts 3 throughout. Before
-- the fix (with 5.2's): 55P03 "while inserting index tuple ... in relation
-- usage_daily_default". Fixed: counts taken off counters inside such
-- transactions are kept as pending usage (billing._usage_pending_add).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS rd_app CASCADE;
CREATE EXTENSION IF NOT EXISTS dblink;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA rd_app;
CREATE TABLE rd_app.rooms (id int PRIMARY KEY, owner_id text NOT NULL);
CREATE TABLE rd_app.participants (id serial PRIMARY KEY, room_id int NOT NULL REFERENCES rd_app.rooms);
SELECT billing.attach_participant_quota('rd_app.participants', 'room_id', 'rd_app.rooms', 'owner_id') >= 0 AS attached;
GRANT USAGE ON SCHEMA rd_app TO billing_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA rd_app TO billing_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA rd_app TO billing_app;
SET ROLE billing_app;
INSERT INTO rd_app.rooms VALUES (20, 'x5'), (21, 'x5');
INSERT INTO rd_app.participants (room_id) VALUES (20), (21);
RESET ROLE;
-- counted "yesterday"
UPDATE billing.quota_counters SET usage_day = usage_day - 1 WHERE key IN ('20', '21');
SELECT dblink_connect('holder', pg_catalog.format('host=%s port=%s dbname=%s user=%s',
	pg_catalog.split_part(pg_catalog.current_setting('unix_socket_directories'), ',', 1),
	pg_catalog.current_setting('port'), pg_catalog.current_database(), CURRENT_USER));
SELECT dblink_exec('holder', 'BEGIN');
SELECT dblink_exec('holder', 'SET ROLE billing_app');
SELECT dblink_exec('holder', 'INSERT INTO rd_app.participants (room_id) VALUES (20)');
SET ROLE billing_admin;
SET lock_timeout = '2s';
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance(pg_catalog.now());
RESET lock_timeout;
RESET ROLE;
SELECT billing.usage('x5', 'participants_joined', pg_catalog.date_trunc('day', pg_catalog.now()) - interval '1 day',
					 pg_catalog.date_trunc('day', pg_catalog.now()) + interval '1 day') AS joins_committed;
SELECT dblink_exec('holder', 'COMMIT');
SELECT dblink_disconnect('holder');
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance(pg_catalog.now());
SELECT billing.usage('x5', 'participants_joined', pg_catalog.date_trunc('day', pg_catalog.now()) - interval '1 day',
					 pg_catalog.date_trunc('day', pg_catalog.now()) + interval '1 day') AS joins;
SELECT count(*) AS still_pending FROM billing.usage_pending;
SELECT CURRENT_DATE - d.day AS days_ago, d.quantity FROM billing.usage_daily d
 WHERE d.user_id = 'x5' ORDER BY d.day;
SET client_min_messages = warning;
DROP SCHEMA rd_app CASCADE;
DROP EXTENSION dblink;
RESET client_min_messages;
