-- Privileges. Nobody but billing_owner writes billing tables directly: the
-- application goes through SECURITY DEFINER functions (owned by
-- billing_owner, a NOLOGIN role that is not a superuser) with a pinned
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
									 'plan_distribution', 'revenue', 'usage_trends', 'daily_report']) THEN
			-- the business's figures are the analyst's, not the application login's
			-- (0.2.0 granted them to billing_app too: the update takes that back)
			EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %s FROM billing_app', f.sig);
			EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO billing_analyst', f.sig);
		ELSIF f.proname = ANY (ARRAY['over_quota', 'usage', 'transitions']) THEN
			EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO billing_analyst, billing_app', f.sig);
		ELSE
			EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO billing_app', f.sig);
		END IF;
	END LOOP;
END
$grants$;

-- attach_*, detach and reconcile_quotas run with the caller's rights; these
-- are the steps they take, each privileged one checking that the session may
-- act as the table's owner.
GRANT EXECUTE ON FUNCTION billing._check_column(regclass, name), billing._check_attachable(regclass, name[]),
	billing._base_type(regtype),
	billing._check_session_owns(regclass), billing._has_deleted_at(regclass),
	billing._attachment_save(text, regclass, name, regclass, name, name, boolean),
	billing._attachment_forget(regclass), billing._start_free_many(text[], timestamptz),
	billing._quota_count(billing.attachments), billing._quota_counters_load(integer, text[], text[], bigint[]),
	billing._quota_counters_repair(integer, text[], text[], bigint[]), billing._quota_attach(billing.attachments),
	billing._quota_create_triggers(billing.attachments), billing._detach_triggers(regclass, text)
	TO billing_admin;
-- The argument checks (pure) run inside every caller's-rights function too.
GRANT EXECUTE ON FUNCTION billing._required(anyelement, text), billing._valid_time(timestamptz, text) TO PUBLIC;
-- CREATE TRIGGER (and a new partition of an attached table, which clones its
-- triggers) needs EXECUTE on the trigger functions: every table owner has it.
-- Each checks that it fires on a table billing attached (42501 otherwise).
GRANT EXECUTE ON FUNCTION billing._quota_trigger(), billing._quota_truncated(), billing._user_inserted(),
	billing._quota_room_owner_changed() TO PUBLIC;

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

-- Least privilege: billing's objects belong to billing_owner, so SECURITY
-- DEFINER functions and the quota trigger's slow path run as a role that can
-- touch billing's own tables and nothing else, not as the superuser who ran
-- CREATE EXTENSION. (The event trigger stays the superuser's: PostgreSQL
-- requires it; its function runs as whoever runs DROP EXTENSION.)
DO $owner$
DECLARE
	r record;
BEGIN
	ALTER SCHEMA billing OWNER TO billing_owner;
	FOR r IN
		SELECT c.oid::regclass AS rel, c.relkind
		  FROM pg_catalog.pg_class c
		 WHERE c.relnamespace OPERATOR(pg_catalog.=) 'billing'::regnamespace
		   AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
		   -- a serial's sequence follows its table
		   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
							WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::regclass
							  AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype IN ('a', 'i')
							  AND c.relkind OPERATOR(pg_catalog.=) 'S')
	LOOP
		EXECUTE pg_catalog.format('ALTER %s %s OWNER TO billing_owner',
			CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
						   ELSE 'TABLE' END, r.rel);
	END LOOP;
	FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace OPERATOR(pg_catalog.=) 'billing'::regnamespace LOOP
		EXECUTE pg_catalog.format('ALTER ROUTINE %s OWNER TO billing_owner', r.sig);
	END LOOP;
	FOR r IN SELECT t.oid::regtype AS typ, t.typtype FROM pg_catalog.pg_type t
			  WHERE t.typnamespace OPERATOR(pg_catalog.=) 'billing'::regnamespace AND t.typtype IN ('e', 'd') LOOP
		EXECUTE pg_catalog.format('ALTER %s %s OWNER TO billing_owner',
			CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.typ);
	END LOOP;
END
$owner$;
