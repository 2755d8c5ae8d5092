-- The first participant into a room nobody has joined reads the room's owner
-- through the rooms table's key index, and inserts the room's counter,
-- without a statement (session 10; src/glue/quota_trigger.cpp
-- OwnerByKeyIndex, src/glue/quota_counter.cpp CreateCounterRow). Each does
-- only what the statement it replaces would do, and steps aside to that
-- statement where it could not: these cases pin the same outcome either way.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS fp_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE ROLE regress_fp_owner LOGIN IN ROLE billing_admin;
CREATE ROLE regress_fp_app LOGIN;
CREATE SCHEMA fp_app AUTHORIZATION regress_fp_owner;
\c - regress_fp_owner
CREATE TABLE fp_app.rooms (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE fp_app.participants (id bigserial PRIMARY KEY, room_id bigint NOT NULL);
GRANT USAGE ON SCHEMA fp_app TO regress_fp_app;
GRANT INSERT ON fp_app.participants TO regress_fp_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA fp_app TO regress_fp_app;
SELECT billing.attach_participant_quota('fp_app.participants', 'room_id', 'fp_app.rooms', 'owner_id') IS NOT NULL
	AS attached;
INSERT INTO fp_app.rooms VALUES (1, 'alice'), (2, 'bob'), (3, NULL), (4, 'carol');
\c - postgres
CREATE FUNCTION fp_counters() RETURNS TABLE (key text, owner_id text, used bigint)
LANGUAGE sql AS $$
	SELECT q.key, q.owner_id, q.used FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
	 WHERE a.relation = 'fp_app.participants'::regclass ORDER BY q.key
$$;

-- == The app may not read the rooms table: refused as the SELECT refuses it
-- (the key index is not a way around the privilege)
\c - regress_fp_app
\set VERBOSITY terse
INSERT INTO fp_app.participants (room_id) VALUES (1);
\set VERBOSITY default

-- == SELECT on the two columns only is enough, as for the SELECT
\c - regress_fp_owner
GRANT SELECT (id, owner_id) ON fp_app.rooms TO regress_fp_app;
\c - regress_fp_app
INSERT INTO fp_app.participants (room_id) VALUES (1), (1);
INSERT INTO fp_app.participants (room_id) VALUES (3);  -- a room of nobody's
\set VERBOSITY terse
INSERT INTO fp_app.participants (room_id) VALUES (99);  -- no such room: 23503
\set VERBOSITY default
\c - postgres
SELECT * FROM fp_counters();

-- == A room in an inheritance child of the rooms table: the SELECT reads the
-- child too (no ONLY), the parent's key index does not
\c - regress_fp_owner
CREATE TABLE fp_app.old_rooms () INHERITS (fp_app.rooms);
INSERT INTO fp_app.old_rooms VALUES (50, 'dave');
GRANT SELECT (id, owner_id) ON fp_app.old_rooms TO regress_fp_app;
\c - regress_fp_app
INSERT INTO fp_app.participants (room_id) VALUES (50);
\c - regress_fp_owner
DROP TABLE fp_app.old_rooms;
\c - postgres
SELECT * FROM fp_counters() WHERE key = '50';

-- == A column a DBA adds to the counters, with a default: a new counter
-- gets it, as the INSERT gives it
ALTER TABLE billing.quota_counters ADD COLUMN dba_note text NOT NULL DEFAULT 'noted';
\c - regress_fp_app
INSERT INTO fp_app.participants (room_id) VALUES (2);
\c - postgres
SELECT q.key, q.used, q.dba_note FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.relation = 'fp_app.participants'::regclass AND q.key = '2';
ALTER TABLE billing.quota_counters DROP COLUMN dba_note;
\c - regress_fp_app
INSERT INTO fp_app.participants (room_id) VALUES (4);  -- without it again
\c - postgres
SELECT * FROM fp_counters();

SET client_min_messages = warning;
DROP FUNCTION fp_counters();
DROP SCHEMA fp_app CASCADE;
DROP OWNED BY regress_fp_owner, regress_fp_app;
DROP ROLE regress_fp_owner, regress_fp_app;
RESET client_min_messages;
