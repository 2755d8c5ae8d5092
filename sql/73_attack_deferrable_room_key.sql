-- Attack (session 8 review 2, hostile tester): the owner watch trigger now
-- fires AFTER INSERT on the rooms table and hands the key's participants
-- counter to the inserted row's owner (kRoomKeyTaken), on the assumption
-- that the key was free. attach_participant_quota accepts a DEFERRABLE
-- primary key on the rooms table. The application's login (INSERT and
-- DELETE on rooms) then, in one transaction with SET CONSTRAINTS ALL
-- DEFERRED, inserts a duplicate of its own Free room naming an Enterprise
-- customer and deletes the duplicate before COMMIT: the Free room's counter
-- now names the Enterprise customer (nothing watches DELETE), so the Free
-- room takes 150 participants (50 allowed), its joins are billed to the
-- Enterprise customer, and over_quota() lists nothing.
-- SAFE outcome (this expected file): attach refuses a deferrable rooms key
-- (PostgreSQL's own foreign keys refuse to reference one), or the 51st
-- participant is refused (QB001) and the counter names free1.
-- As fixed (session 9): attach refuses it (0A000), and a key made deferrable
-- (or dropped) after attach is refused (55000) whenever billing would find a
-- room by it: the owner watch about to move a counter, a first participant.
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
CREATE TABLE atk_app.rooms (id bigint PRIMARY KEY DEFERRABLE, owner_id text);
CREATE TABLE atk_app.participants (id bigserial PRIMARY KEY, room_id bigint NOT NULL);
GRANT USAGE ON SCHEMA atk_app TO regress_atk_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA atk_app TO regress_atk_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA atk_app TO regress_atk_app;
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT billing.attach_participant_quota('atk_app.participants', 'room_id', 'atk_app.rooms', 'owner_id');
\set VERBOSITY terse
DO $$
BEGIN
	PERFORM billing.attach_participant_quota('atk_app.participants', 'room_id', 'atk_app.rooms', 'owner_id');
EXCEPTION WHEN OTHERS THEN
	NULL;  -- a refusal is a safe outcome too
END
$$;
\c - postgres
SELECT (billing.subscribe('ent', 'enterprise_yearly', with_trial => false)).status;
SELECT (billing.record_payment(s.id, s.price_cents, s.currency, true)).status
  FROM billing.subscriptions s WHERE s.user_id = 'ent' AND s.ended_at IS NULL;
\c - regress_atk_app
INSERT INTO atk_app.rooms VALUES (9, 'free1');
DO $$
BEGIN
	INSERT INTO atk_app.participants (room_id) SELECT 9 FROM generate_series(1, 50);
	-- a duplicate of room 9 for the Enterprise customer, gone before COMMIT
	SET CONSTRAINTS ALL DEFERRED;
	INSERT INTO atk_app.rooms VALUES (9, 'ent');
	DELETE FROM atk_app.rooms WHERE id = 9 AND owner_id = 'ent';
	SET CONSTRAINTS ALL IMMEDIATE;
	INSERT INTO atk_app.participants (room_id) SELECT 9 FROM generate_series(1, 100);
EXCEPTION WHEN SQLSTATE 'QB001' THEN
	NULL;
END
$$;
SELECT id, owner_id FROM atk_app.rooms;
\c - postgres
SELECT NOT EXISTS (SELECT FROM billing.attachments WHERE relation = 'atk_app.participants'::regclass)
	   OR (SELECT count(*) FROM atk_app.participants WHERE room_id = 9) <= 50 AS safe;
SELECT key, owner_id FROM billing.quota_counters WHERE key = '9' AND owner_id <> 'free1';
-- the rooms key made deferrable after attach, then dropped: billing refuses
-- to find a room by it until an immediate key is back
\c - regress_atk_migrator
CREATE TABLE atk_app.rooms2 (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE atk_app.participants2 (id bigserial PRIMARY KEY, room_id bigint NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA atk_app TO regress_atk_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA atk_app TO regress_atk_app;
SELECT billing.attach_participant_quota('atk_app.participants2', 'room_id', 'atk_app.rooms2', 'owner_id');
\c - regress_atk_app
INSERT INTO atk_app.rooms2 VALUES (9, 'free1'), (10, 'free1');
INSERT INTO atk_app.participants2 (room_id) SELECT 9 FROM generate_series(1, 50);
\c - regress_atk_migrator
ALTER TABLE atk_app.rooms2 DROP CONSTRAINT rooms2_pkey, ADD PRIMARY KEY (id) DEFERRABLE;
\c - regress_atk_app
BEGIN;
SET CONSTRAINTS ALL DEFERRED;
\set VERBOSITY default
INSERT INTO atk_app.rooms2 VALUES (9, 'ent');
\set VERBOSITY terse
ROLLBACK;
-- a room's first participant needs its owner, found by the key: refused too
INSERT INTO atk_app.participants2 (room_id) VALUES (10);
-- and a room given to another owner (its counter would follow)
UPDATE atk_app.rooms2 SET owner_id = 'ent' WHERE id = 9;
-- a room whose key no counter holds needs nothing; a counted room's counter
-- still counts (the 51st participant of a Free room)
INSERT INTO atk_app.rooms2 VALUES (11, 'ent');
INSERT INTO atk_app.participants2 (room_id) VALUES (9);
\c - regress_atk_migrator
ALTER TABLE atk_app.rooms2 DROP CONSTRAINT rooms2_pkey;
\c - regress_atk_app
INSERT INTO atk_app.rooms2 VALUES (9, 'ent');
\c - regress_atk_migrator
ALTER TABLE atk_app.rooms2 ADD PRIMARY KEY (id);
\c - regress_atk_app
UPDATE atk_app.rooms2 SET owner_id = 'free2' WHERE id = 9;
INSERT INTO atk_app.participants2 (room_id) VALUES (10);
\c - postgres
SELECT key, owner_id, used FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.relation = 'atk_app.participants2'::regclass ORDER BY key;
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
