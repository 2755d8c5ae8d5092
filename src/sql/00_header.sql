-- billing: subscription billing inside PostgreSQL.
-- This script is assembled from src/sql/[0-9]*.sql by the Makefile.
\echo Use "CREATE EXTENSION billing" to load this file. \quit

SET LOCAL search_path TO pg_catalog, pg_temp;

CREATE SCHEMA billing;
COMMENT ON SCHEMA billing IS 'Subscription billing: plans, subscriptions, payments, invoices, usage, quotas';

-- Roles are cluster-wide, so they may already exist from another database.
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['billing_admin', 'billing_app', 'billing_analyst', 'billing_owner'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			BEGIN
				EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
			EXCEPTION WHEN unique_violation OR duplicate_object THEN
				NULL;  -- a concurrent CREATE EXTENSION in another database created it first
			END;
		END IF;
	END LOOP;
	-- billing_owner owns billing's objects and is what its privileged code runs
	-- as (99_grants_and_dump.sql): it must be no more than that.
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
				WHERE rolname OPERATOR(pg_catalog.=) 'billing_owner'
				  AND (rolsuper OR rolcanlogin OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)) THEN
		RAISE EXCEPTION 'role "billing_owner" must be a plain NOLOGIN role'
			USING ERRCODE = '42501',
				  DETAIL = 'billing''s privileged code runs as billing_owner; it must not be a superuser or able to log in.';
	END IF;
	-- Whoever can act as billing_owner can replace billing's functions, which
	-- superusers call (pg_cron's maintenance, the event triggers on their
	-- DDL): a member would be a superuser in waiting. Nor may billing_owner
	-- hold another role's rights (pg_execute_server_program, say).
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r
				 ON r.oid OPERATOR(pg_catalog.=) m.roleid OR r.oid OPERATOR(pg_catalog.=) m.member
				WHERE r.rolname OPERATOR(pg_catalog.=) 'billing_owner') THEN
		RAISE EXCEPTION 'role "billing_owner" must have no members and belong to no role'
			USING ERRCODE = '42501',
				  DETAIL = 'billing''s objects belong to billing_owner, and superusers run its functions: a member of billing_owner could become a superuser.',
				  HINT = 'REVOKE billing_owner FROM every member (and every role FROM billing_owner) before installing or updating billing.';
	END IF;
END
$roles$;

GRANT USAGE ON SCHEMA billing TO billing_admin, billing_app, billing_analyst, PUBLIC;
