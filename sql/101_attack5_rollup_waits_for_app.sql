-- Attack (session 10 review 5, finding 5.2): the usage rollup at the end of
-- every run_maintenance locked the quota counters it closes FOR UPDATE and
-- waited for any transaction holding one. billing_app inserts a room (the
-- quota trigger updates the owner's counter and keeps its row lock until
-- commit) in a transaction it never ends: every maintenance run waits for
-- ever at its rollup, with everything it renewed, expired and dunned for
-- every user uncommitted (and those users' locks held). One application
-- session, no privilege beyond INSERT on its own rooms table.
-- The holder runs through dblink (a second session) as billing_app.
-- SAFE outcome (this expected file): run_maintenance by the admin completes
-- while the app's transaction is open (the busy counter is left to the next
-- rollup); once the app commits, the next run rolls both rooms up, and
-- usage() counts 2 throughout. Before the fix: 55P03 (lock_timeout) on
-- "while locking tuple ... in relation quota_counters".
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS ra_app CASCADE;
CREATE EXTENSION IF NOT EXISTS dblink;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA ra_app;
CREATE TABLE ra_app.users (id text PRIMARY KEY);
CREATE TABLE ra_app.rooms (id bigserial PRIMARY KEY, owner_id text NOT NULL REFERENCES ra_app.users);
SELECT billing.attach_users('ra_app.users', 'id');
SELECT billing.attach_room_quota('ra_app.rooms', 'owner_id') >= 0 AS attached;
GRANT USAGE ON SCHEMA ra_app TO billing_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ra_app TO billing_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ra_app TO billing_app;
SET ROLE billing_app;
INSERT INTO ra_app.users VALUES ('x5'), ('y5');
INSERT INTO ra_app.rooms (owner_id) VALUES ('x5');
RESET ROLE;
-- the hostile application session: a room inserted, transaction left open
SELECT dblink_connect('holder', pg_catalog.format('host=%s port=%s dbname=%s user=%s',
	pg_catalog.split_part(pg_catalog.current_setting('unix_socket_directories'), ',', 1),
	pg_catalog.current_setting('port'), pg_catalog.current_database(), CURRENT_USER));
SELECT dblink_exec('holder', 'BEGIN');
SELECT dblink_exec('holder', 'SET ROLE billing_app');
SELECT dblink_exec('holder', 'INSERT INTO ra_app.rooms (owner_id) VALUES (''x5'')');
-- the administrator's scheduled run, for everyone
SET ROLE billing_admin;
SET lock_timeout = '2s';
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance(pg_catalog.now());
RESET lock_timeout;
RESET ROLE;
SELECT dblink_exec('holder', 'COMMIT');
SELECT dblink_disconnect('holder');
SELECT billing.usage('x5', 'rooms_created', pg_catalog.date_trunc('day', pg_catalog.now()),
					 pg_catalog.date_trunc('day', pg_catalog.now()) + interval '1 day') AS rooms_today;
SELECT count(*) >= 0 AS ran FROM billing.run_maintenance(pg_catalog.now());
SELECT billing.usage('x5', 'rooms_created', pg_catalog.date_trunc('day', pg_catalog.now()),
					 pg_catalog.date_trunc('day', pg_catalog.now()) + interval '1 day') AS rooms_today;
SELECT used FROM billing.quota('x5', 'rooms');
SET client_min_messages = warning;
DROP SCHEMA ra_app CASCADE;
DROP EXTENSION dblink;
RESET client_min_messages;
