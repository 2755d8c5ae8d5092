-- Attack (session 8 review 2, hostile tester): attach_participant_quota
-- again with another rooms table (the participants moved to rooms_v2) keeps
-- the attachment id and creates billing_quota_room_owner_<id> on the new
-- rooms table, but drops it only there: the old rooms table keeps a watch
-- trigger whose attachment now names another table. Since this session the
-- watch fires AFTER INSERT too, so every INSERT into the old rooms table
-- (and every UPDATE) fails with 42501 "may not act on billing's counters",
-- also after billing.detach(participants), which drops the watch on the
-- current rooms table only. The application's own table is broken by a
-- routine re-attach.
-- SAFE outcome (this expected file): the re-attach (or detach) removes the
-- watch from the old rooms table; inserts into it succeed.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE ROLE regress_atk_app LOGIN;
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TABLE atk_app.rooms (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE atk_app.rooms_v2 (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE atk_app.participants (id bigserial PRIMARY KEY, room_id bigint);
GRANT USAGE ON SCHEMA atk_app TO regress_atk_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA atk_app TO regress_atk_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA atk_app TO regress_atk_app;
SELECT billing.attach_participant_quota('atk_app.participants', 'room_id', 'atk_app.rooms', 'owner_id');
-- the participants now belong to rooms_v2
SELECT billing.attach_participant_quota('atk_app.participants', 'room_id', 'atk_app.rooms_v2', 'owner_id');
SELECT count(*) AS watch_triggers_on_old_rooms FROM pg_trigger
 WHERE tgrelid = 'atk_app.rooms'::regclass AND tgname LIKE 'billing\_quota\_room\_owner\_%';
\c - regress_atk_app
INSERT INTO atk_app.rooms VALUES (1, 'a');
UPDATE atk_app.rooms SET owner_id = 'b' WHERE id = 1;
\c - regress_atk_migrator
SELECT billing.detach('atk_app.participants');
\c - regress_atk_app
INSERT INTO atk_app.rooms VALUES (2, 'a');
SELECT count(*) AS old_rooms FROM atk_app.rooms;
\c - postgres
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
