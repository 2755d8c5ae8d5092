-- Session 11 (hist4): the audit trigger (glue/audit.cpp, billing._audit)
-- inserts a statement's audit rows without a statement
-- (WriteAuditRowsDirectly) while billing.audit_log is as that code knows it;
-- the rows are the statement's, every column. Shown by the same scenario
-- twice in one transaction (the same ids and now()), the second time with
-- row-level security enabled on the audit log (its owner, who writes it,
-- bypasses it; the guard sends the rows through the statement), and by the
-- audit statement this backend prepared (none on the direct path).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.audit_statements() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM pg_catalog.pg_backend_memory_contexts
	 WHERE name = 'CachedPlanSource' AND ident LIKE 'INSERT INTO billing.audit_log%'
$$;
-- trials and paid subscriptions; maintenance (set-based pages: the
-- subscriptions' updates, the invoices' inserts, many rows per statement);
-- a DBA's updates with and without an application user, one row and many;
-- a plan inserted and deleted
CREATE FUNCTION pg_temp.scenario() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM billing.start_trial('a4-' || i, 'pro_monthly', '2030-01-01') FROM generate_series(1, 5) i;
	PERFORM billing.subscribe('a4-p' || i, 'pro_monthly', '2030-01-02', false) FROM generate_series(1, 4) i;
	PERFORM billing.run_maintenance('2030-01-16');
	PERFORM billing.run_maintenance('2030-02-03');
	PERFORM pg_catalog.set_config('billing.app_user', 'dba-1', true);
	UPDATE billing.subscriptions SET metadata = '{"note": "x\u00e9", "n": [1, 2.50, null]}' WHERE user_id LIKE 'a4-p%';
	PERFORM pg_catalog.set_config('billing.app_user', '', true);
	UPDATE billing.subscriptions SET metadata = '{}' WHERE user_id = 'a4-p1';
	INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
	VALUES ('a4_plan', 'A4', 'custom', 'monthly', 100, 'usd');
	DELETE FROM billing.subscription_plans WHERE code = 'a4_plan';
END
$$;
BEGIN;
CREATE EXTENSION billing;
SELECT pg_temp.scenario();
SELECT pg_temp.audit_statements() AS audit_statements_prepared;
CREATE TEMP TABLE direct AS SELECT pg_catalog.to_jsonb(a) AS r FROM billing.audit_log a;
SELECT r->>'table_name' AS table_name, r->>'action' AS action, count(*), count(r->>'app_user') AS with_app_user
  FROM direct GROUP BY 1, 2 ORDER BY 1, 2;
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
ALTER TABLE billing.audit_log ENABLE ROW LEVEL SECURITY;
SELECT pg_temp.scenario();
SELECT pg_temp.audit_statements() > 0 AS audit_statements_prepared;
-- the same rows, every column (id, row_id, the JSON, db_role, app_user,
-- logged_at ...)
SELECT (SELECT count(*) FROM (SELECT r FROM direct EXCEPT ALL SELECT pg_catalog.to_jsonb(a) FROM billing.audit_log a) d) AS only_direct,
	   (SELECT count(*) FROM (SELECT pg_catalog.to_jsonb(a) FROM billing.audit_log a EXCEPT ALL SELECT r FROM direct) d) AS only_statement;
COMMIT;
-- and each row's JSON is to_jsonb's: every subscription's and invoice's
-- latest audit row holds the row as it is, in the same bytes (integers,
-- money, times, enums, jsonb)
SELECT t.table_name, count(*) AS rows,
	   count(*) FILTER (WHERE pg_catalog.jsonb_send(t.now) IS DISTINCT FROM (SELECT pg_catalog.jsonb_send(a.new_row)
		 FROM billing.audit_log a WHERE a.table_name = t.table_name AND a.row_id = t.id ORDER BY a.id DESC LIMIT 1)) AS differ
  FROM (SELECT 'subscriptions' AS table_name, s.id::text AS id, pg_catalog.to_jsonb(s) AS now FROM billing.subscriptions s
		UNION ALL
		SELECT 'invoices', i.id::text, pg_catalog.to_jsonb(i) FROM billing.invoices i) t
 GROUP BY t.table_name ORDER BY t.table_name;
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
