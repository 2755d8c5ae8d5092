-- Attack (session 8, hostile tester): the rooms limit is enforced per
-- attached table (one counter per attachment and owner), but quota() and the
-- plan speak of the user's rooms: with two rooms tables attached (rooms and,
-- say, webinars), a Free user (3 rooms) gets 3 in each, 6 in all, while
-- quota() reports used 6 of 3 and over_quota() lists nobody.
-- SAFE outcome (this expected file, as fixed): the second rooms table is
-- refused when it is attached (0A000: billing counts rooms in one table), so
-- the migration that attaches it fails and nothing pretends to limit it;
-- the webinars insert is then not billing's (4 rooms, quota() 3 of 3 for
-- the one table counted, nobody over quota).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TABLE atk_app.rooms (id bigserial PRIMARY KEY, owner_id text);
CREATE TABLE atk_app.webinars (id bigserial PRIMARY KEY, owner_id text);
SELECT billing.attach_room_quota('atk_app.rooms', 'owner_id');
SELECT billing.attach_room_quota('atk_app.webinars', 'owner_id');
INSERT INTO atk_app.rooms (owner_id) VALUES ('u1'), ('u1'), ('u1');
INSERT INTO atk_app.webinars (owner_id) VALUES ('u1');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT (SELECT count(*) FROM atk_app.rooms WHERE owner_id = 'u1')
	 + (SELECT count(*) FROM atk_app.webinars WHERE owner_id = 'u1') AS u1_rooms;
SELECT "limit", used FROM billing.quota('u1', 'rooms');
SELECT user_id, quota, "limit", used FROM billing.over_quota();

SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator;
DROP ROLE regress_atk_migrator;
RESET client_min_messages;
