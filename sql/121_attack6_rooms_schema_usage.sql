-- attack6 F5 (session 10 review): the first participant's room owner is read
-- through the rooms table's key index without a statement
-- (src/glue/quota_trigger.cpp OwnerByKeyIndex) only where the statement
-- "SELECT r.owner FROM schema.rooms r WHERE r.key OPERATOR(ns.=) $1" would
-- read it for the inserting role. The statement names the table's schema
-- and the operator's, so it needs USAGE on both, and EXECUTE on the
-- operator's function; the index probe opened the table by its OID and
-- called the function unchecked: a role with SELECT on the rooms but no
-- USAGE on their schema read them.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS a6_app, a6_rooms CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE ROLE regress_a6_owner LOGIN IN ROLE billing_admin;
CREATE ROLE regress_a6_app LOGIN;
CREATE SCHEMA a6_app AUTHORIZATION regress_a6_owner;
CREATE SCHEMA a6_rooms AUTHORIZATION regress_a6_owner;
\c - regress_a6_owner
CREATE TABLE a6_rooms.rooms (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE a6_app.participants (id bigserial PRIMARY KEY, room_id bigint NOT NULL);
GRANT USAGE ON SCHEMA a6_app TO regress_a6_app;
GRANT INSERT ON a6_app.participants TO regress_a6_app;
GRANT SELECT ON a6_rooms.rooms TO regress_a6_app;  -- but no USAGE on a6_rooms
GRANT USAGE ON ALL SEQUENCES IN SCHEMA a6_app TO regress_a6_app;
SELECT billing.attach_participant_quota('a6_app.participants', 'room_id', 'a6_rooms.rooms', 'owner_id') IS NOT NULL
	AS attached;
INSERT INTO a6_rooms.rooms VALUES (1, 'alice'), (2, 'bob');
\c - postgres
CREATE FUNCTION a6_counters() RETURNS TABLE (key text, owner_id text, used bigint)
LANGUAGE sql AS $$
	SELECT q.key, q.owner_id, q.used
	  FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
	 WHERE a.relation = 'a6_app.participants'::regclass ORDER BY q.key
$$;

-- == no USAGE on the rooms' schema: refused as the SELECT refuses it (42501)
\c - regress_a6_app
SELECT count(*) FROM a6_rooms.rooms;
\set VERBOSITY terse
INSERT INTO a6_app.participants (room_id) VALUES (1);
\set VERBOSITY default
\c - postgres
SELECT * FROM a6_counters();

-- == with USAGE: the owner is read (the direct read, same outcome)
\c - regress_a6_owner
GRANT USAGE ON SCHEMA a6_rooms TO regress_a6_app;
\c - regress_a6_app
INSERT INTO a6_app.participants (room_id) VALUES (1), (2);
\c - postgres
SELECT * FROM a6_counters();

SET client_min_messages = warning;
DROP FUNCTION a6_counters();
DROP SCHEMA a6_app, a6_rooms CASCADE;
DROP OWNED BY regress_a6_owner, regress_a6_app;
DROP ROLE regress_a6_owner, regress_a6_app;
RESET client_min_messages;
