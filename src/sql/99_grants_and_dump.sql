-- Privileges. Nobody but the extension owner writes billing tables directly:
-- the application goes through SECURITY DEFINER functions with a pinned
-- search_path. Analysts read; admins read and edit plans.
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA billing FROM PUBLIC;
GRANT SELECT ON billing.pricing TO PUBLIC;

GRANT SELECT ON ALL TABLES IN SCHEMA billing TO billing_analyst, billing_admin;
REVOKE SELECT ON billing.settings FROM billing_analyst;
GRANT INSERT, UPDATE ON billing.subscription_plans TO billing_admin;
GRANT USAGE ON SEQUENCE billing.subscription_plans_id_seq TO billing_admin;
GRANT billing_app, billing_analyst TO billing_admin;

-- Functions are granted by name: anything not listed stays internal.
DO $grants$
DECLARE
	f record;
BEGIN
	FOR f IN
		SELECT p.oid::regprocedure AS sig, p.proname
		  FROM pg_catalog.pg_proc p
		 WHERE p.pronamespace OPERATOR(pg_catalog.=) 'billing'::regnamespace
		   AND p.proname !~ '^_'
	LOOP
		IF f.proname = ANY (ARRAY['configure', 'attach_users', 'attach_room_quota', 'attach_participant_quota',
								  'detach', 'reconcile_quotas', 'run_maintenance', 'run_maintenance_batches',
								  'rollup_usage', 'stripe_replay']) THEN
			EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO billing_admin', f.sig);
		ELSIF f.proname = ANY (ARRAY['mrr', 'arr', 'active_subscriptions', 'churn', 'arpu', 'trial_conversion',
									 'plan_distribution', 'revenue', 'usage_trends', 'daily_report',
									 'over_quota', 'usage', 'transitions']) THEN
			EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO billing_analyst, billing_app', f.sig);
		ELSE
			EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO billing_app', f.sig);
		END IF;
	END LOOP;
END
$grants$;

-- Every billing table and sequence survives pg_dump, whole: the shipped plans
-- and seeded settings replace the ones CREATE EXTENSION inserts on restore
-- (see billing._plans_pristine and billing._settings_restored).
DO $dump$
DECLARE
	r record;
BEGIN
	FOR r IN
		SELECT c.oid::regclass AS rel, c.relname, c.relkind
		  FROM pg_catalog.pg_class c
		 WHERE c.relnamespace OPERATOR(pg_catalog.=) 'billing'::regnamespace
		   AND c.relkind IN ('r', 'S')
	LOOP
		PERFORM pg_catalog.pg_extension_config_dump(r.rel, '');
	END LOOP;
END
$dump$;
