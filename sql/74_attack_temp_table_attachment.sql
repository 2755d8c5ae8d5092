-- Attack (session 8 review 2, hostile tester): the sql_drop event trigger
-- now forgets an attachment whose table is gone, but a TEMPORARY table goes
-- without any event trigger: at the end of its session, or at DISCARD ALL /
-- DISCARD TEMP (what a connection pooler runs between clients).
-- attach_room_quota accepts a temporary table. A billing_admin who owns no
-- application table attaches one as the rooms table, inserts 3 rooms for
-- 'victim' and runs DISCARD ALL: the attachment of a gone table stays, so
-- quota('victim', 'rooms') says 3 of 3 used (no rooms left) for rows that no
-- longer exist, the real rooms table cannot be attached (0A000: "one rooms
-- table", naming a bare OID), and detach() of it is refused (42P01), until
-- somebody's next unrelated DROP happens to clean it up.
-- SAFE outcome (this expected file): attach_* refuses a temporary table (or
-- the attachment goes with it): quota() counts 0, the real table attaches.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE ROLE regress_atk_admin2 LOGIN IN ROLE billing_admin;   -- owns no application table
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_admin2
CREATE TEMP TABLE rooms (id bigint PRIMARY KEY, owner_id text);
DO $$
BEGIN
	PERFORM billing.attach_room_quota('pg_temp.rooms', 'owner_id');
	INSERT INTO pg_temp.rooms VALUES (1, 'victim'), (2, 'victim'), (3, 'victim');
EXCEPTION WHEN OTHERS THEN
	NULL;  -- a refusal is a safe outcome too
END
$$;
DISCARD ALL;
\c - postgres
SELECT count(*) AS attachments_of_gone_tables FROM billing.attachments a
 WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = a.relation);
SELECT "limit", used FROM billing.quota('victim', 'rooms');
-- the application's own rooms table
\c - regress_atk_migrator
CREATE TABLE atk_app.rooms (id bigint PRIMARY KEY, owner_id text);
SELECT billing.attach_room_quota('atk_app.rooms', 'owner_id');
\c - postgres
SELECT count(*) AS attachments_of_gone_tables FROM billing.attachments a
 WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = a.relation);
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_admin2;
DROP ROLE regress_atk_migrator, regress_atk_admin2;
RESET client_min_messages;
