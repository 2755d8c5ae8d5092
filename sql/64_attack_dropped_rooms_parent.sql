-- Attack (session 8, hostile tester): billing_after_drop_table forgets the
-- attachment of a dropped table only when it is the attachment's relation,
-- never when it is a participants attachment's rooms table
-- (parent_relation). After DROP TABLE rooms (as its owner, e.g. a migration
-- that replaces it), the participants table stays attached to a rooms table
-- that is gone: every insert of a participant of a new room fails with
-- XX000 ("could not open relation with OID n", RoomOwner), and
-- reconcile_quotas() fails for every caller, superuser included (it joins
-- the bare OID: 42601).
-- SAFE outcome (this expected file): the participants attachment goes too
-- (or is refused with a documented SQLSTATE, never XX000), and
-- reconcile_quotas() runs.
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
CREATE TABLE atk_app.rooms (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE atk_app.participants (id bigserial PRIMARY KEY, room_id bigint);
SELECT billing.attach_participant_quota('atk_app.participants', 'room_id', 'atk_app.rooms', 'owner_id');
INSERT INTO atk_app.rooms VALUES (1, 'u1');
INSERT INTO atk_app.participants (room_id) VALUES (1);
DROP TABLE atk_app.rooms;
DO $$
BEGIN
	INSERT INTO atk_app.participants (room_id) VALUES (2);
	RAISE NOTICE 'outcome: no XX000';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'outcome: %', CASE WHEN SQLSTATE = 'XX000' THEN 'XX000' ELSE 'no XX000' END;
END
$$;
\c - postgres
SELECT count(*) AS attachments_naming_a_gone_table FROM billing.attachments a
 WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = a.relation)
	OR (a.parent_relation IS NOT NULL AND NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = a.parent_relation));
DO $$
BEGIN
	PERFORM billing.reconcile_quotas();
	RAISE NOTICE 'reconcile_quotas: runs';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'reconcile_quotas: fails with %', SQLSTATE;
END
$$;

SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator;
DROP ROLE regress_atk_migrator;
RESET client_min_messages;
