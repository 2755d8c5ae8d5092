-- Attack (session 8, hostile tester): the sql_drop event trigger only listens
-- for DROP TABLE, DROP SCHEMA and DROP OWNED. A typed table (CREATE TABLE
-- ... OF type) that billing counts goes with DROP TYPE ... CASCADE, which
-- leaves its attachment and counters behind: quota() still counts the rows
-- that are gone, and reconcile_quotas() fails for every caller, superuser
-- included (it builds LOCK TABLE <bare OID>: 42601), until someone deletes
-- the attachment by hand. Any table owner in billing_admin can do it. And
-- since _check_session_owns lets a gone relation pass, any billing_admin,
-- owning nothing, can then write that attachment's counters for anybody
-- (_quota_counters_load): 'victim' shows 1000 rooms in quota() and over_quota().
-- SAFE outcome (this expected file): the attachment goes with the table,
-- quota() counts 0, reconcile_quotas() runs, the forged counters are refused.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE ROLE regress_atk_admin2 LOGIN IN ROLE billing_admin;   -- owns nothing
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TYPE atk_app.room AS (id bigint, owner_id text);
CREATE TABLE atk_app.rooms OF atk_app.room (PRIMARY KEY (id));
SELECT billing.attach_room_quota('atk_app.rooms', 'owner_id');
INSERT INTO atk_app.rooms VALUES (1, 'u1'), (2, 'u1');
SET client_min_messages = warning;
DROP TYPE atk_app.room CASCADE;
RESET client_min_messages;
SELECT to_regclass('atk_app.rooms') AS rooms_table;
\c - postgres
SELECT count(*) AS attachments_left FROM billing.attachments WHERE kind = 'rooms';
SELECT "limit", used FROM billing.quota('u1', 'rooms');
SELECT count(*) AS repaired FROM billing.reconcile_quotas();
\echo :LAST_ERROR_SQLSTATE
\c - regress_atk_admin2
DO $$
DECLARE
	n integer;
BEGIN
	SELECT a.id INTO n FROM billing.attachments a WHERE a.kind = 'rooms';
	IF n IS NULL THEN
		RAISE NOTICE 'forged counters: refused';
		RETURN;
	END IF;
	PERFORM billing._quota_counters_load(n, '{victim}', '{victim}', '{1000}');
	RAISE NOTICE 'forged counters: accepted';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'forged counters: refused';
END
$$;
\c - postgres
SELECT used AS victims_rooms FROM billing.quota('victim', 'rooms');

SET client_min_messages = warning;
DELETE FROM billing.attachments WHERE kind = 'rooms';
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_admin2;
DROP ROLE regress_atk_migrator, regress_atk_admin2;
RESET client_min_messages;
