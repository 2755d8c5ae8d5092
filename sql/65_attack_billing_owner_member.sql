-- Attack (session 8, hostile tester): billing_owner is superuser-equivalent.
-- It owns the functions of billing's event triggers (which fire, as the role
-- that runs the DDL, on every ALTER TABLE, DROP TABLE and DROP EXTENSION,
-- including a superuser's) and the C trigger functions on the application's
-- tables (which run as the inserting role). Whoever can act as billing_owner
-- can CREATE OR REPLACE one of them in PL/pgSQL and wait for a superuser's
-- DDL. CREATE EXTENSION reuses an existing billing_owner (roles are
-- cluster-wide) and checks its attributes, not its members: a role granted
-- billing_owner (by a CREATEROLE role that made it before the install, by
-- another database's DBA, for debugging) becomes a superuser. The README's
-- "a mistake anywhere can at worst touch billing's own tables" does not hold.
-- SAFE outcome (this expected file): the member never becomes a superuser
-- (the install refuses a billing_owner with members, and/or event trigger and
-- trigger functions do not belong to billing_owner).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP TABLE IF EXISTS public.atk_dba_table;
RESET client_min_messages;
CREATE ROLE regress_atk_mallory LOGIN;
DO $$
BEGIN
	EXECUTE 'GRANT billing_owner TO regress_atk_mallory';
EXCEPTION WHEN undefined_object THEN
	CREATE ROLE billing_owner NOLOGIN;
	GRANT billing_owner TO regress_atk_mallory;
END
$$;
-- refused: billing_owner has a member
CREATE EXTENSION billing;
SELECT count(*) AS billing_installed FROM pg_extension WHERE extname = 'billing';
DO $$
BEGIN
	CREATE EXTENSION billing;
EXCEPTION WHEN OTHERS THEN
	NULL;  -- refusing to install over a billing_owner with members is a safe outcome
END
$$;
\c - regress_atk_mallory
DO $$
BEGIN
	CREATE OR REPLACE FUNCTION billing._before_attach_partition() RETURNS event_trigger LANGUAGE plpgsql AS $f$
	BEGIN
		IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
			EXECUTE 'ALTER ROLE regress_atk_mallory SUPERUSER';
		END IF;
	END
	$f$;
EXCEPTION WHEN OTHERS THEN
	NULL;
END
$$;
\c - postgres
-- the DBA's ordinary DDL, anywhere in the database
CREATE TABLE public.atk_dba_table (a integer);
ALTER TABLE public.atk_dba_table ADD COLUMN b integer;
SELECT rolsuper AS mallory_is_superuser FROM pg_roles WHERE rolname = 'regress_atk_mallory';

SET client_min_messages = warning;
DROP TABLE public.atk_dba_table;
DROP EXTENSION IF EXISTS billing CASCADE;
REVOKE billing_owner FROM regress_atk_mallory;
DROP ROLE regress_atk_mallory;
RESET client_min_messages;
