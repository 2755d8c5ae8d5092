-- Audit: every insert, update and delete on the business tables is logged with the
-- database role and the application user (SET billing.app_user = '...').
-- Values of settings whose key contains "secret" are never logged in clear.
-- A C++ statement trigger (src/glue/audit.cpp): it inserts the audit rows of
-- a statement at once (one insert per 1,000 rows, from the transition tables)
-- as the table's owner through a statement prepared once per backend, and
-- skips the rows pg_restore loads (billing._restoring()).
CREATE FUNCTION billing._audit() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_audit';

-- Internal: true while a dump is being restored, that is while a superuser's
-- COPY billing.<table> ... FROM stdin (what pg_restore and a plain-format dump
-- run) loads a billing table. The rows restored then are not audited again
-- (the dumped audit log already holds their history) and replace the rows
-- CREATE EXTENSION has just seeded.
CREATE FUNCTION billing._restoring() RETURNS boolean
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'billing_restoring';

-- A restored setting replaces the default CREATE EXTENSION has just seeded.
CREATE FUNCTION billing._settings_restored() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF billing._restoring() THEN
		DELETE FROM billing.settings s WHERE s.key OPERATOR(pg_catalog.=) NEW.key;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER restore_replaces BEFORE INSERT ON billing.settings
	FOR EACH ROW EXECUTE FUNCTION billing._settings_restored();

-- A shipped plan stops being pristine when edited; while pg_restore loads
-- the dumped plans (all of them, edited or not), each replaces the pristine
-- one CREATE EXTENSION has just inserted with the same code or id.
-- Plan rows are not history (review R7): the reports group the history's
-- plan_id by the plan's code and tier as they are now, so the code and tier
-- of a plan a subscription has used are frozen (55000); add a new plan
-- instead. Name, limits, features, price for new subscriptions, trial days,
-- sort order and deletion stay editable. "Used": named by a subscription
-- or by the history (a Stripe price switch rewrites a subscription's plan
-- in place, attack finding 3/5), read with the newest snapshot after the
-- plan row is locked FOR UPDATE (a subscription committed after a
-- REPEATABLE READ admin's snapshot, or still being inserted, counts: attack
-- finding 3/4).
-- Internal: billing._plan_used(plan_id) (src/glue/audit.cpp).
-- Planned for each call's plan id (session 11): the history is probed by its
-- plan_id index (subscription_history_plan); a generic plan, which a kept
-- plan becomes after five calls, expects a used plan's many rows and scans
-- for the first, reading the whole history for an unused plan.
CREATE FUNCTION billing._plan_used(plan_id bigint) RETURNS boolean
LANGUAGE c SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan
AS 'MODULE_PATHNAME', 'billing_plan_used';

CREATE FUNCTION billing._plans_pristine() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
		IF NEW.code IS DISTINCT FROM OLD.code OR NEW.tier IS DISTINCT FROM OLD.tier THEN
			-- a subscription being inserted holds FOR KEY SHARE of the plan row
			-- (its foreign key), which this UPDATE's lock does not wait for:
			-- FOR UPDATE does (attack finding 3/4)
			PERFORM 1 FROM billing.subscription_plans p WHERE p.id OPERATOR(pg_catalog.=) OLD.id FOR UPDATE;
			IF billing._plan_used(OLD.id) THEN
				RAISE EXCEPTION 'plan "%" has subscriptions: its code and tier cannot change', OLD.code
					USING ERRCODE = '55000',
						  DETAIL = 'Reports of past dates group subscriptions by the plan''s code and tier; plans are not history.',
						  HINT = 'Add a new plan with the new code or tier and move subscriptions to it with change_plan.';
			END IF;
		END IF;
		IF OLD.pristine AND NEW.pristine THEN
			NEW.pristine := false;
		END IF;
		RETURN NEW;
	END IF;
	-- only for pg_restore: anyone else's insert of an existing code fails on
	-- the unique key (billing_admin may not delete plans)
	IF billing._restoring() THEN
		DELETE FROM billing.subscription_plans p
		 WHERE p.pristine AND (p.code OPERATOR(pg_catalog.=) NEW.code OR p.id OPERATOR(pg_catalog.=) NEW.id)
		   AND NOT EXISTS (SELECT 1 FROM billing.subscriptions s WHERE s.plan_id OPERATOR(pg_catalog.=) p.id);
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER pristine BEFORE INSERT OR UPDATE ON billing.subscription_plans
	FOR EACH ROW EXECUTE FUNCTION billing._plans_pristine();

INSERT INTO billing.subscription_plans
	(id, code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features, sort_order, pristine)
VALUES
	(1, 'free', 'Free', 'free', 'monthly', 0, 'usd', 0,
	 '{"rooms": 3, "participants_per_room": 50}',
	 '{"recording": false, "custom_branding": false, "priority_support": false}', 10, true),
	(2, 'pro_monthly', 'Pro (monthly)', 'pro', 'monthly', 2999, 'usd', 14,
	 '{"rooms": 50, "participants_per_room": 500}',
	 '{"recording": true, "custom_branding": true, "priority_support": false}', 20, true),
	(3, 'pro_yearly', 'Pro (yearly)', 'pro', 'yearly', 28800, 'usd', 14,
	 '{"rooms": 50, "participants_per_room": 500}',
	 '{"recording": true, "custom_branding": true, "priority_support": false}', 30, true),
	(4, 'enterprise_yearly', 'Enterprise (yearly)', 'enterprise', 'yearly', 99900, 'usd', 30,
	 '{"rooms": null, "participants_per_room": null}',
	 '{"recording": true, "custom_branding": true, "priority_support": true, "sso": true}', 40, true);
SELECT pg_catalog.setval('billing.subscription_plans_id_seq', 4);

INSERT INTO billing.settings (key, value) VALUES
	('past_due_grace', '14 days'),
	('stripe_tolerance', '5 minutes');

-- Audit and updated_at triggers come after the seeds: what CREATE EXTENSION
-- installs is not a change anybody made (and a restore must not meet it in
-- the dumped audit log).
DO $audit$
DECLARE
	t record;
BEGIN
	FOR t IN SELECT * FROM (VALUES
			('settings', 'key'), ('subscription_plans', 'id'), ('subscriptions', 'id'),
			('invoices', 'id'), ('payments', 'id')) AS v(name, key)
	LOOP
		-- per statement with its transition tables (one trigger per event:
		-- PostgreSQL allows transition tables only on single-event triggers),
		-- so a statement that changes 1,000 rows writes their audit rows at once
		EXECUTE pg_catalog.format('CREATE TRIGGER audit_insert AFTER INSERT ON billing.%I'
			' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._audit(%L)', t.name, t.key);
		EXECUTE pg_catalog.format('CREATE TRIGGER audit_update AFTER UPDATE ON billing.%I'
			' REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._audit(%L)',
			t.name, t.key);
		EXECUTE pg_catalog.format('CREATE TRIGGER audit_delete AFTER DELETE ON billing.%I'
			' REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._audit(%L)', t.name, t.key);
	END LOOP;
	FOR t IN SELECT c.relname AS name FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
		WHERE c.relnamespace OPERATOR(pg_catalog.=) 'billing'::regnamespace AND c.relkind IN ('r', 'p')
		  AND NOT c.relispartition  -- a partition has its parent's trigger
		  AND a.attname OPERATOR(pg_catalog.=) 'updated_at'
	LOOP
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.%I
			 FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at()', t.name);
	END LOOP;
END
$audit$;
