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
	FOREACH r IN ARRAY ARRAY['billing_admin', 'billing_app', 'billing_analyst'] LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

GRANT USAGE ON SCHEMA billing TO billing_admin, billing_app, billing_analyst, PUBLIC;
