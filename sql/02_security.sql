-- Privileges: the application writes billing tables only through functions,
-- analysts read everything but the settings (secrets live there), and only
-- billing_admin changes settings.
SELECT rolname, rolcanlogin FROM pg_roles
 WHERE rolname IN ('billing_admin', 'billing_app', 'billing_analyst') ORDER BY 1;
CREATE ROLE regress_billing_sec_app LOGIN IN ROLE billing_app;
CREATE ROLE regress_billing_sec_analyst LOGIN IN ROLE billing_analyst;
CREATE ROLE regress_billing_sec_admin LOGIN IN ROLE billing_admin;

-- A table that reports, for every billing table, which privileges a role has.
CREATE FUNCTION pg_temp.table_privileges(who name)
RETURNS TABLE (relname name, can_select boolean, can_insert boolean, can_update boolean, can_delete boolean,
               can_truncate boolean)
LANGUAGE sql AS $$
	SELECT c.relname,
	       has_table_privilege(who, c.oid, 'SELECT'), has_table_privilege(who, c.oid, 'INSERT'),
	       has_table_privilege(who, c.oid, 'UPDATE'), has_table_privilege(who, c.oid, 'DELETE'),
	       has_table_privilege(who, c.oid, 'TRUNCATE')
	  FROM pg_class c
	 WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'p')
	 ORDER BY c.relname
$$;
GRANT EXECUTE ON FUNCTION pg_temp.table_privileges(name) TO PUBLIC;

-- billing_app: no direct write on any billing table, no read either
SELECT * FROM pg_temp.table_privileges('regress_billing_sec_app')
 WHERE can_select OR can_insert OR can_update OR can_delete OR can_truncate;
-- billing_analyst: reads every table except billing.settings, writes none
SELECT * FROM pg_temp.table_privileges('regress_billing_sec_analyst')
 WHERE NOT can_select OR can_insert OR can_update OR can_delete OR can_truncate;
-- billing_admin: reads everything, writes only plans
SELECT * FROM pg_temp.table_privileges('regress_billing_sec_admin')
 WHERE NOT can_select OR can_insert OR can_update OR can_delete OR can_truncate;

-- As the application.
SET ROLE regress_billing_sec_app;
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval,
                                   started_at, current_period_start)
VALUES ('sec-user', 1, 'active', 0, 'usd', 'monthly', now(), now());
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.subscription_plans SET price_cents = 0;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM billing.payments;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.settings (key, value) VALUES ('stripe_webhook_secret', 'whsec_mine');
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.settings SET value = '1 second';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.audit_log (table_name, row_id, action) VALUES ('x', 'x', 'INSERT');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM billing.audit_log;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM billing.settings;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM billing.subscriptions;
\echo :LAST_ERROR_SQLSTATE
SELECT setval('billing.invoice_number_seq', 1);
\echo :LAST_ERROR_SQLSTATE
-- what the application may do
SELECT code, price_cents FROM billing.effective_plan('sec-user');
SELECT code, price_cents, trial_days FROM billing.pricing;
SELECT billing.configure('past_due_grace', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_users('pg_catalog.pg_class', 'oid');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- As an analyst.
SET ROLE regress_billing_sec_analyst;
SELECT count(*) > 0 AS sees_plans FROM billing.subscription_plans;
SELECT count(*) >= 0 AS sees_subscriptions FROM billing.subscriptions;
SELECT count(*) >= 0 AS sees_audit_log FROM billing.audit_log;
SELECT key FROM billing.settings;
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.subscription_plans SET price_cents = 1 WHERE code = 'free';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at) VALUES ('sec-user', 'x', 1, now());
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('past_due_grace', '1 day');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- As an admin: configure works.
SET ROLE regress_billing_sec_admin;
SELECT billing.configure('stripe_tolerance', '6 minutes');
SELECT key, value FROM billing.settings WHERE key = 'stripe_tolerance';
SELECT billing.configure('stripe_tolerance', '5 minutes');
RESET ROLE;

-- Every SECURITY DEFINER function in schema billing pins search_path.
SELECT p.oid::regprocedure AS unpinned_security_definer
  FROM pg_proc p
 WHERE p.pronamespace = 'billing'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%');
-- ... and pins it to pg_catalog first, so no schema the caller controls comes first.
SELECT p.oid::regprocedure AS loosely_pinned
  FROM pg_proc p, unnest(p.proconfig) c
 WHERE p.pronamespace = 'billing'::regnamespace AND p.prosecdef AND c LIKE 'search_path=%'
   AND c NOT LIKE 'search_path=pg_catalog, pg_temp';
-- PUBLIC may execute no billing function at all: the application's functions
-- are granted to billing_app, the reports to billing_analyst, administration
-- to billing_admin. (The pricing view is PUBLIC's way in.)
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'billing'::regnamespace
   AND (p.proacl IS NULL
        OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))
 ORDER BY 1;
-- nor any sequence or table; the one relation PUBLIC may read is the pricing view
SELECT c.relname, a.privilege_type
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'billing'::regnamespace AND a.grantee = 0
 ORDER BY 1, 2;
-- a role with no billing membership at all
CREATE ROLE regress_billing_sec_nobody LOGIN;
SET ROLE regress_billing_sec_nobody;
SELECT count(*) > 0 AS sees_pricing FROM billing.pricing;
SELECT code FROM billing.effective_plan('sec-user');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM billing.subscription_plans;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- The business's figures (reports) are the analyst's: an application login
-- may not read revenue or MRR (it may read entitlements, usage, over_quota).
SELECT p.proname AS report, has_function_privilege('billing_app', p.oid, 'EXECUTE') AS app_may,
       has_function_privilege('billing_analyst', p.oid, 'EXECUTE') AS analyst_may
  FROM pg_proc p
 WHERE p.pronamespace = 'billing'::regnamespace
   AND p.proname IN ('mrr', 'arr', 'active_subscriptions', 'churn', 'arpu', 'trial_conversion',
                     'plan_distribution', 'revenue', 'usage_trends', 'daily_report',
                     'over_quota', 'usage', 'transitions')
 ORDER BY 1, 2, 3;
SET ROLE regress_billing_sec_app;
SELECT billing.revenue('2030-01-01', '2030-02-01');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- internal functions (leading underscore) are not granted to the application roles
SELECT p.oid::regprocedure AS internal_granted
  FROM pg_proc p
 WHERE p.pronamespace = 'billing'::regnamespace AND p.proname LIKE '\_%'
   AND (has_function_privilege('billing_app', p.oid, 'EXECUTE')
        OR has_function_privilege('billing_analyst', p.oid, 'EXECUTE'));

DROP ROLE regress_billing_sec_app, regress_billing_sec_analyst, regress_billing_sec_admin,
          regress_billing_sec_nobody;
