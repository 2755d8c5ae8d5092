-- Attack (session 8, hostile tester): billing keys its counters by the
-- counted column's output text (COLLATE "C"), but the application's own
-- equality (its foreign keys, its joins) follows the column's collation. With
-- a case-insensitive (nondeterministic) collation, 'alice' and 'ALICE' are one
-- user to the application and two owners to billing, each with its own Free
-- limit: the application's login gives one Free user as many rooms as the
-- owner id has spellings (7 here, Free allows 3). The same holds for citext
-- and for a participants table keyed by such a room key. Without any collation,
-- a plain numeric room key does it too: 42, 42.0 and 42.00 are one room to
-- the foreign key and three counters to billing (150 participants in a Free
-- room that allows 50). And the key text depends on the inserting session's
-- settings: with a bytea owner id, SET bytea_output = 'escape' makes a new
-- owner of the same bytes (6 rooms for one Free owner).
-- SAFE outcome (this expected file): attach_room_quota refuses a counted
-- column with a nondeterministic collation, or alice ends with at most 3;
-- likewise room 42 ends with at most 50 participants and the bytea owner
-- with at most 3 rooms (or attach refuses those tables).
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
CREATE COLLATION atk_app.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE atk_app.users (id text COLLATE atk_app.ci PRIMARY KEY);
CREATE TABLE atk_app.rooms (id bigserial PRIMARY KEY, owner_id text COLLATE atk_app.ci NOT NULL REFERENCES atk_app.users);
GRANT USAGE ON SCHEMA atk_app TO regress_atk_app;
GRANT SELECT, INSERT ON atk_app.users, atk_app.rooms TO regress_atk_app;
GRANT USAGE ON SEQUENCE atk_app.rooms_id_seq TO regress_atk_app;
DO $$
BEGIN
	PERFORM billing.attach_room_quota('atk_app.rooms', 'owner_id');
EXCEPTION WHEN OTHERS THEN
	NULL;  -- a refusal is a safe outcome too
END
$$;
CREATE TABLE atk_app.nrooms (id numeric PRIMARY KEY, owner_id text);
CREATE TABLE atk_app.nparticipants (id bigserial PRIMARY KEY, room_id numeric REFERENCES atk_app.nrooms);
GRANT SELECT, INSERT ON atk_app.nrooms, atk_app.nparticipants TO regress_atk_app;
GRANT USAGE ON SEQUENCE atk_app.nparticipants_id_seq TO regress_atk_app;
DO $$
BEGIN
	PERFORM billing.attach_participant_quota('atk_app.nparticipants', 'room_id', 'atk_app.nrooms', 'owner_id');
EXCEPTION WHEN OTHERS THEN
	NULL;  -- a refusal is a safe outcome too
END
$$;
CREATE TABLE atk_app.brooms (id bigserial PRIMARY KEY, owner_id bytea NOT NULL);
GRANT SELECT, INSERT ON atk_app.brooms TO regress_atk_app;
GRANT USAGE ON SEQUENCE atk_app.brooms_id_seq TO regress_atk_app;
DO $$
BEGIN
	PERFORM billing.attach_room_quota('atk_app.brooms', 'owner_id');
EXCEPTION WHEN OTHERS THEN
	NULL;  -- a refusal is a safe outcome too
END
$$;
\c - regress_atk_app
DO $$
DECLARE
	style text;
BEGIN
	FOREACH style IN ARRAY ARRAY['hex', 'escape'] LOOP
		PERFORM set_config('bytea_output', style, true);
		BEGIN
			INSERT INTO atk_app.brooms (owner_id) SELECT '\x0102'::bytea FROM generate_series(1, 3);
		EXCEPTION WHEN SQLSTATE 'QB001' THEN
			NULL;
		END;
	END LOOP;
END
$$;
INSERT INTO atk_app.nrooms VALUES (42, 'bob');
DO $$
DECLARE
	spelling numeric;
BEGIN
	FOREACH spelling IN ARRAY ARRAY[42, 42.0, 42.00] LOOP
		BEGIN
			INSERT INTO atk_app.nparticipants (room_id) SELECT spelling FROM generate_series(1, 50);
		EXCEPTION WHEN SQLSTATE 'QB001' THEN
			NULL;
		END;
	END LOOP;
END
$$;
INSERT INTO atk_app.users VALUES ('alice');
DO $$
DECLARE
	spelling text;
BEGIN
	FOREACH spelling IN ARRAY ARRAY['alice', 'alice', 'alice', 'alice', 'ALICE', 'Alice', 'aLice', 'alIce'] LOOP
		BEGIN
			INSERT INTO atk_app.rooms (owner_id) VALUES (spelling);
		EXCEPTION WHEN SQLSTATE 'QB001' THEN
			NULL;
		END;
	END LOOP;
END
$$;
\c - postgres
SELECT NOT EXISTS (SELECT FROM billing.attachments WHERE relation = 'atk_app.rooms'::regclass)
	   OR (SELECT count(*) FROM atk_app.rooms WHERE owner_id = 'alice') <= 3 AS safe;
SELECT NOT EXISTS (SELECT FROM billing.attachments WHERE relation = 'atk_app.nparticipants'::regclass)
	   OR (SELECT count(*) FROM atk_app.nparticipants WHERE room_id = 42) <= 50 AS safe_numeric;
SELECT NOT EXISTS (SELECT FROM billing.attachments WHERE relation = 'atk_app.brooms'::regclass)
	   OR (SELECT count(*) FROM atk_app.brooms WHERE owner_id = '\x0102'::bytea) <= 3 AS safe_bytea;
-- The refusals themselves (42804 for a type, 0A000 for a collation), and
-- keys billing can count: a domain over text, uuid, integer.
\set VERBOSITY default
\c - regress_atk_migrator
SELECT billing.attach_room_quota('atk_app.rooms', 'owner_id');
SELECT billing.attach_participant_quota('atk_app.nparticipants', 'room_id', 'atk_app.nrooms', 'owner_id');
SELECT billing.attach_room_quota('atk_app.brooms', 'owner_id');
CREATE DOMAIN atk_app.handle AS text CHECK (VALUE <> '');
CREATE TABLE atk_app.drooms (id uuid PRIMARY KEY, owner_id atk_app.handle);
CREATE TABLE atk_app.dparticipants (id integer PRIMARY KEY, room_id uuid);
SELECT billing.attach_room_quota('atk_app.drooms', 'owner_id');
SELECT billing.attach_participant_quota('atk_app.dparticipants', 'room_id', 'atk_app.drooms', 'owner_id');
\c - postgres
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
