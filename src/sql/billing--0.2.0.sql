-- billing 0.2.0, as released: kept so that CREATE EXTENSION billing VERSION '0.2.0'
-- and the upgrade test can start from it. Do not edit.
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
CREATE TYPE billing.plan_tier AS ENUM ('free', 'pro', 'enterprise', 'custom');
CREATE TYPE billing.subscription_status AS ENUM
	('trialing', 'active', 'past_due', 'canceled', 'expired', 'incomplete', 'paused');
CREATE TYPE billing.billing_interval AS ENUM ('monthly', 'yearly', 'lifetime');

-- Touches updated_at on every update of a billing table.
CREATE FUNCTION billing._touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	NEW.updated_at := pg_catalog.now();
	RETURN NEW;
END
$$;
-- Tables. Money is bigint minor units plus a lower-case ISO 4217 code.
-- Every table has created_at, updated_at and deleted_at (soft delete).

CREATE TABLE billing.settings (
	key text PRIMARY KEY,
	value text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.settings IS 'Settings changed with billing.configure(key, value)';

CREATE TABLE billing.subscription_plans (
	id bigserial PRIMARY KEY,
	code text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_]*$'),
	name text NOT NULL CHECK (name <> ''),
	tier billing.plan_tier NOT NULL,
	billing_interval billing.billing_interval NOT NULL,
	price_cents bigint NOT NULL CHECK (price_cents >= 0),
	currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	trial_days integer NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 730),
	limits jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object'),
	features jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(features) = 'object'),
	sort_order integer NOT NULL DEFAULT 0,
	stripe_product_id text,
	stripe_price_id text UNIQUE,
	active boolean NOT NULL DEFAULT true,
	-- true only for the rows CREATE EXTENSION inserts, until they are edited;
	-- a restore replaces such rows with the dumped ones.
	pristine boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.subscription_plans IS 'The plans users can be on; limits and features are JSON objects';

CREATE TABLE billing.subscriptions (
	id bigserial PRIMARY KEY,
	user_id text NOT NULL CHECK (user_id <> ''),
	plan_id bigint NOT NULL REFERENCES billing.subscription_plans (id),
	status billing.subscription_status NOT NULL,
	-- price, currency and interval at the time of subscribing (grandfathered)
	price_cents bigint NOT NULL CHECK (price_cents >= 0),
	currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	billing_interval billing.billing_interval NOT NULL,
	started_at timestamptz NOT NULL,
	billing_anchor timestamptz,
	current_period_start timestamptz NOT NULL,
	current_period_end timestamptz,
	trial_start timestamptz,
	trial_end timestamptz,
	cancel_at_period_end boolean NOT NULL DEFAULT false,
	canceled_at timestamptz,
	ended_at timestamptz,
	paused_at timestamptz,
	past_due_since timestamptz,
	scheduled_plan_id bigint REFERENCES billing.subscription_plans (id),
	scheduled_change_at timestamptz,
	end_reason text CHECK (end_reason IN ('canceled', 'plan_changed', 'trial_ended', 'payment_failed', 'incomplete_expired')),
	stripe_customer_id text,
	stripe_subscription_id text,
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	CONSTRAINT period_ends_after_start CHECK (current_period_end IS NULL OR current_period_end >= current_period_start),
	CONSTRAINT trial_ends_after_start CHECK (trial_end IS NULL OR (trial_start IS NOT NULL AND trial_end >= trial_start)),
	CONSTRAINT ended_after_start CHECK (ended_at IS NULL OR ended_at >= started_at),
	CONSTRAINT expired_is_ended CHECK (status <> 'expired' OR ended_at IS NOT NULL),
	CONSTRAINT only_canceled_or_expired_end CHECK (ended_at IS NULL OR status IN ('canceled', 'expired'))
);
COMMENT ON TABLE billing.subscriptions IS 'Every subscription a user ever had; at most one is current (ended_at IS NULL)';
-- At most one current subscription per user, enforced by the database.
CREATE UNIQUE INDEX subscriptions_one_current_per_user
	ON billing.subscriptions (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL;
CREATE INDEX subscriptions_user_history ON billing.subscriptions (user_id, started_at);
CREATE UNIQUE INDEX subscriptions_stripe_id
	ON billing.subscriptions (stripe_subscription_id) WHERE stripe_subscription_id IS NOT NULL;
-- What maintenance must visit: current subscriptions by the time something is due.
CREATE INDEX subscriptions_due_period_end
	ON billing.subscriptions (current_period_end) WHERE ended_at IS NULL AND deleted_at IS NULL;
CREATE INDEX subscriptions_due_trial_end
	ON billing.subscriptions (trial_end) WHERE status = 'trialing' AND deleted_at IS NULL;
CREATE INDEX subscriptions_plan ON billing.subscriptions (plan_id);

CREATE SEQUENCE billing.invoice_number_seq;

CREATE TABLE billing.invoices (
	id bigserial PRIMARY KEY,
	number text NOT NULL UNIQUE,
	user_id text NOT NULL CHECK (user_id <> ''),
	subscription_id bigint REFERENCES billing.subscriptions (id),
	status text NOT NULL DEFAULT 'open' CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
	billing_reason text NOT NULL DEFAULT 'manual'
		CHECK (billing_reason IN ('subscription_create', 'subscription_cycle', 'subscription_update', 'manual')),
	currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	period_start timestamptz,
	period_end timestamptz,
	subtotal_cents bigint NOT NULL DEFAULT 0,
	total_cents bigint NOT NULL DEFAULT 0,
	amount_paid_cents bigint NOT NULL DEFAULT 0 CHECK (amount_paid_cents >= 0),
	amount_due_cents bigint NOT NULL DEFAULT 0 CHECK (amount_due_cents >= 0),
	lines jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(lines) = 'array'),
	issued_at timestamptz NOT NULL,
	paid_at timestamptz,
	stripe_invoice_id text UNIQUE,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	CONSTRAINT invoice_period_ends_after_start CHECK (period_end IS NULL OR period_end >= period_start),
	CONSTRAINT paid_invoice_has_paid_at CHECK (status <> 'paid' OR paid_at IS NOT NULL)
);
COMMENT ON TABLE billing.invoices IS 'Invoices: renewal, first period and proration; amounts in minor units';
CREATE INDEX invoices_subscription ON billing.invoices (subscription_id, issued_at);
CREATE INDEX invoices_user ON billing.invoices (user_id, issued_at);
-- One renewal invoice per subscription and period, whoever issues it.
CREATE UNIQUE INDEX invoices_one_per_period
	ON billing.invoices (subscription_id, period_start)
	WHERE billing_reason IN ('subscription_create', 'subscription_cycle') AND deleted_at IS NULL;

CREATE TABLE billing.payments (
	id bigserial PRIMARY KEY,
	user_id text NOT NULL CHECK (user_id <> ''),
	subscription_id bigint REFERENCES billing.subscriptions (id),
	invoice_id bigint REFERENCES billing.invoices (id),
	amount_cents bigint NOT NULL,
	currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	status text NOT NULL CHECK (status IN ('succeeded', 'failed')),
	refund_of bigint REFERENCES billing.payments (id),
	external_id text,
	stripe_payment_intent_id text,
	stripe_charge_id text,
	failure_code text,
	failure_message text,
	paid_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	-- a refund is a negative payment that points at what it refunds
	CONSTRAINT refund_is_negative CHECK ((refund_of IS NULL AND amount_cents >= 0) OR (refund_of IS NOT NULL AND amount_cents < 0)),
	CONSTRAINT failure_only_when_failed CHECK (status = 'failed' OR failure_code IS NULL)
);
COMMENT ON TABLE billing.payments IS 'Payments (succeeded or failed) and refunds (negative amounts); never card data';
CREATE UNIQUE INDEX payments_external_id ON billing.payments (external_id) WHERE external_id IS NOT NULL;
CREATE INDEX payments_subscription ON billing.payments (subscription_id, paid_at);
CREATE INDEX payments_invoice ON billing.payments (invoice_id);
CREATE INDEX payments_refund_of ON billing.payments (refund_of) WHERE refund_of IS NOT NULL;
CREATE INDEX payments_paid_at ON billing.payments (paid_at);

CREATE TABLE billing.usage_records (
	id bigserial PRIMARY KEY,
	user_id text NOT NULL CHECK (user_id <> ''),
	subscription_id bigint REFERENCES billing.subscriptions (id),
	metric text NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_.]*$'),
	quantity bigint NOT NULL CHECK (quantity >= 0),
	recorded_at timestamptz NOT NULL,
	idempotency_key text,
	-- false until billing.rollup_usage() has added it to billing.usage_daily
	rolled_up boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.usage_records IS 'Metered usage events, rolled up daily into billing.usage_daily';
CREATE UNIQUE INDEX usage_records_idempotency
	ON billing.usage_records (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The rollup reads only what has not been rolled up yet.
CREATE INDEX usage_records_pending ON billing.usage_records (recorded_at) WHERE NOT rolled_up;
CREATE INDEX usage_records_user_metric ON billing.usage_records (user_id, metric, recorded_at);

CREATE TABLE billing.usage_daily (
	user_id text NOT NULL,
	metric text NOT NULL,
	day date NOT NULL,
	quantity bigint NOT NULL CHECK (quantity >= 0),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	PRIMARY KEY (user_id, metric, day)
);
COMMENT ON TABLE billing.usage_daily IS 'Daily per-user, per-metric usage totals (UTC days)';
CREATE INDEX usage_daily_day ON billing.usage_daily (day, metric);

CREATE TABLE billing.audit_log (
	id bigserial PRIMARY KEY,
	table_name text NOT NULL,
	row_id text NOT NULL,
	action text NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
	old_row jsonb,
	new_row jsonb,
	db_role text NOT NULL DEFAULT session_user,
	app_user text,
	logged_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.audit_log IS 'Every insert and update on the billing tables, with who made it';
CREATE INDEX audit_log_row ON billing.audit_log (table_name, row_id);

-- What billing is attached to in the application's schema.
CREATE TABLE billing.attachments (
	id serial PRIMARY KEY,
	kind text NOT NULL CHECK (kind IN ('users', 'rooms', 'participants')),
	relation regclass NOT NULL,
	key_column name NOT NULL,
	owner_column name,
	parent_relation regclass,
	parent_owner_column name,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	UNIQUE (relation, kind)
);
COMMENT ON TABLE billing.attachments IS 'Application tables billing is attached to (users, rooms, participants)';
-- Audit: every insert and update on the business tables is logged with the
-- database role and the application user (SET billing.app_user = '...').
-- Values of settings whose key contains "secret" are never logged in clear.
CREATE FUNCTION billing._audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	new_json jsonb := CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END;
	old_json jsonb := CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END;
BEGIN
	-- pg_restore loading the dumped audit log must not log its own loading
	IF billing._restoring() THEN
		RETURN NULL;
	END IF;
	IF TG_TABLE_NAME = 'settings' THEN
		IF new_json ->> 'key' LIKE '%secret%' THEN
			new_json := new_json || '{"value": "********"}';
		END IF;
		IF old_json ->> 'key' LIKE '%secret%' THEN
			old_json := old_json || '{"value": "********"}';
		END IF;
	END IF;
	INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row, app_user)
	VALUES (TG_TABLE_NAME,
			COALESCE(new_json, old_json) ->> TG_ARGV[0],
			TG_OP, old_json, new_json,
			NULLIF(pg_catalog.current_setting('billing.app_user', true), ''));
	RETURN NULL;
END
$$;

-- Internal: true while a dump is being restored, that is while a superuser's
-- COPY billing.<table> ... FROM stdin (what pg_restore and a plain-format dump
-- run) loads a billing table. The rows restored then are not audited again
-- (the dumped audit log already holds their history) and replace the rows
-- CREATE EXTENSION has just seeded.
CREATE FUNCTION billing._restoring() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.current_query() ~* '^\s*COPY\s+billing\.\S+.*\sFROM\s+stdin'
	   AND COALESCE((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = session_user), false)
$$;

-- A restored setting replaces the default CREATE EXTENSION has just seeded.
CREATE FUNCTION billing._settings_restored() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF billing._restoring() THEN
		DELETE FROM billing.settings s WHERE s.key = NEW.key;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER restore_replaces BEFORE INSERT ON billing.settings
	FOR EACH ROW EXECUTE FUNCTION billing._settings_restored();

-- A shipped plan stops being pristine when edited; inserting a plan whose code
-- is still pristine replaces it. That is what lets pg_restore load the dumped
-- plans (all of them, edited or not) over the ones CREATE EXTENSION has just
-- inserted.
CREATE FUNCTION billing._plans_pristine() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF OLD.pristine AND NEW.pristine THEN
			NEW.pristine := false;
		END IF;
		RETURN NEW;
	END IF;
	DELETE FROM billing.subscription_plans p
	 WHERE p.pristine AND (p.code = NEW.code OR p.id = NEW.id)
	   AND NOT EXISTS (SELECT 1 FROM billing.subscriptions s WHERE s.plan_id = p.id);
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
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON billing.%I
			 FOR EACH ROW EXECUTE FUNCTION billing._audit(%L)', t.name, t.key);
	END LOOP;
	FOR t IN SELECT c.relname AS name FROM pg_catalog.pg_class c
			JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid
		WHERE c.relnamespace OPERATOR(pg_catalog.=) 'billing'::regnamespace AND c.relkind OPERATOR(pg_catalog.=) 'r'
		  AND a.attname OPERATOR(pg_catalog.=) 'updated_at'
	LOOP
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.%I
			 FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at()', t.name);
	END LOOP;
END
$audit$;
-- billing.configure(key, value): the only way to change settings.
CREATE FUNCTION billing.configure(key text, value text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF key IS NULL OR value IS NULL THEN
		RAISE EXCEPTION 'setting key and value must not be null' USING ERRCODE = '22023';
	END IF;
	CASE key
	WHEN 'past_due_grace', 'stripe_tolerance' THEN
		BEGIN
			IF value::interval < interval '0' THEN
				RAISE EXCEPTION 'setting "%" must not be negative', key USING ERRCODE = '22023';
			END IF;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
			RAISE EXCEPTION 'invalid value for setting "%": "%"', key, value
				USING ERRCODE = '22023', HINT = 'Give an interval such as ''14 days''.';
		END;
	WHEN 'stripe_webhook_secret' THEN
		IF pg_catalog.btrim(value) = '' THEN
			RAISE EXCEPTION 'setting "stripe_webhook_secret" must not be empty' USING ERRCODE = '22023';
		END IF;
		-- secrets are separated by commas (for rotation); none may be empty
		IF EXISTS (SELECT 1 FROM pg_catalog.unnest(pg_catalog.string_to_array(value, ',')) AS secret
					WHERE pg_catalog.btrim(secret) = '') THEN
			RAISE EXCEPTION 'setting "stripe_webhook_secret" must not hold an empty secret'
				USING ERRCODE = '22023', HINT = 'Separate two or more secrets with single commas.';
		END IF;
	ELSE
		RAISE EXCEPTION 'unknown setting "%"', key
			USING ERRCODE = '22023',
				  HINT = 'Known settings are past_due_grace, stripe_tolerance and stripe_webhook_secret.';
	END CASE;
	INSERT INTO billing.settings AS s (key, value) VALUES (key, value)
	ON CONFLICT ON CONSTRAINT settings_pkey DO UPDATE SET value = EXCLUDED.value, deleted_at = NULL;
END
$$;
COMMENT ON FUNCTION billing.configure(text, text) IS 'Changes a billing setting (billing_admin only)';

-- Internal: a setting's value, or the given default.
CREATE FUNCTION billing._setting(key text, fallback text DEFAULT NULL) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE((SELECT s.value FROM billing.settings s WHERE s.key = $1 AND s.deleted_at IS NULL), $2)
$$;
-- The plan whose limits and features apply to a user at a given time (SPEC §2,
-- §3): the current subscription's plan while it is trialing, active or
-- past_due, or canceled with its period not yet ended; the Free plan otherwise.
CREATE FUNCTION billing.effective_plan(user_id text, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscription_plans
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.*
	  FROM (SELECT s.plan_id, 0 AS rank
			  FROM billing.subscriptions s
			 WHERE s.user_id = $1
			   AND s.deleted_at IS NULL
			   AND s.started_at <= $2
			   AND (s.ended_at IS NULL OR s.ended_at > $2)
			   AND (s.status IN ('trialing', 'active', 'past_due')
					OR (s.status = 'canceled' AND s.current_period_end > $2))
			UNION ALL
			SELECT f.id, 1 FROM billing.subscription_plans f WHERE f.code = 'free') AS candidate
	  JOIN billing.subscription_plans p ON p.id = candidate.plan_id
	 ORDER BY candidate.rank
	 LIMIT 1
$$;
COMMENT ON FUNCTION billing.effective_plan(text, timestamptz) IS
	'The plan whose limits and features apply to the user at the given time';

-- Plans for a pricing page.
CREATE VIEW billing.pricing AS
	SELECT code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features
	  FROM billing.subscription_plans
	 WHERE active AND deleted_at IS NULL
	 ORDER BY sort_order, price_cents, code;
COMMENT ON VIEW billing.pricing IS 'Active plans with prices, trial days, limits and features, for a pricing page';
GRANT SELECT ON billing.pricing TO PUBLIC;

-- Internal: the application-table column a trigger argument names, as text.
CREATE FUNCTION billing._check_column(relation regclass, col name) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
					WHERE a.attrelid = relation AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', col, relation USING ERRCODE = '42703';
	END IF;
END
$$;

-- Gives each new user a Free subscription.
CREATE FUNCTION billing._user_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	uid text := pg_catalog.to_jsonb(NEW) ->> TG_ARGV[0];
BEGIN
	IF uid IS NOT NULL AND uid <> '' THEN
		PERFORM billing._start_free(uid, pg_catalog.now());
	END IF;
	RETURN NULL;
END
$$;

-- Internal: a Free subscription for a user that has no current one.
CREATE FUNCTION billing._start_free(user_id text, at timestamptz) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO billing.subscriptions
		(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start)
	SELECT $1, p.id, 'active', p.price_cents, p.currency, p.billing_interval, $2, $2
	  FROM billing.subscription_plans p WHERE p.code = 'free'
	ON CONFLICT (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL DO NOTHING
$$;

CREATE FUNCTION billing.attach_users(users regclass, id_column name) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	backfilled bigint;
BEGIN
	IF users IS NULL OR id_column IS NULL THEN
		RAISE EXCEPTION 'users table and id column must not be null' USING ERRCODE = '22023';
	END IF;
	PERFORM billing._check_column(users, id_column);
	-- attaching again with the same column changes nothing
	INSERT INTO billing.attachments AS a (kind, relation, key_column)
	VALUES ('users', users, id_column)
	ON CONFLICT (relation, kind) DO UPDATE SET key_column = EXCLUDED.key_column
		WHERE a.key_column IS DISTINCT FROM EXCLUDED.key_column;

	IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = users AND t.tgname = 'billing_user_inserted') THEN
		EXECUTE pg_catalog.format('DROP TRIGGER billing_user_inserted ON %s', users);
	END IF;
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER billing_user_inserted AFTER INSERT ON %s
		 FOR EACH ROW EXECUTE FUNCTION billing._user_inserted(%L)', users, id_column);

	EXECUTE pg_catalog.format(
		'INSERT INTO billing.subscriptions
			(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start)
		 SELECT u.%1$I::text, p.id, ''active'', p.price_cents, p.currency, p.billing_interval, now(), now()
		   FROM %2$s u CROSS JOIN billing.subscription_plans p
		  WHERE p.code = ''free'' AND u.%1$I IS NOT NULL
		 ON CONFLICT (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL DO NOTHING', id_column, users);
	GET DIAGNOSTICS backfilled = ROW_COUNT;
	RETURN backfilled;
END
$$;
COMMENT ON FUNCTION billing.attach_users(regclass, name) IS
	'Gives every existing and every new user of the table a Free subscription; returns how many were backfilled';

-- Removes billing's triggers from an application table; its rows are untouched.
CREATE FUNCTION billing.detach(relation regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t name;
	parent regclass;
BEGIN
	FOR t IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
			  WHERE tg.tgrelid = relation AND NOT tg.tgisinternal AND tg.tgname LIKE 'billing\_%'
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, relation);
	END LOOP;
	-- a participants table's attachment also watches its rooms table
	FOR t, parent IN SELECT tg.tgname, a.parent_relation FROM billing.attachments a
					   JOIN pg_catalog.pg_trigger tg ON tg.tgrelid OPERATOR(pg_catalog.=) a.parent_relation
					  WHERE a.relation OPERATOR(pg_catalog.=) detach.relation
						AND tg.tgname OPERATOR(pg_catalog.=) ('billing_quota_room_owner_' || a.id)
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, parent);
	END LOOP;
	DELETE FROM billing.attachments a WHERE a.relation = detach.relation;
END
$$;
COMMENT ON FUNCTION billing.detach(regclass) IS 'Removes billing''s triggers from an application table';

-- DROP EXTENSION billing first detaches every application table, so the
-- triggers on them (which depend on the extension's functions) do not block it
-- and the tables and rows stay as they were.
CREATE FUNCTION billing._before_drop_extension() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r regclass;
BEGIN
	IF pg_catalog.lower(pg_catalog.current_query()) !~ 'drop\s+extension.*billing' THEN
		RETURN;
	END IF;
	FOR r IN SELECT DISTINCT a.relation FROM billing.attachments a LOOP
		PERFORM billing.detach(r);
	END LOOP;
END
$$;
CREATE EVENT TRIGGER billing_before_drop_extension ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION') EXECUTE FUNCTION billing._before_drop_extension();
-- Quotas (SPEC §2): C++ triggers on the application's rooms and participants
-- keep one counter row per owner (rooms) or per room (participants). An insert
-- is one primary-key UPDATE of that row: the row lock makes the limit exact
-- under any concurrency, and the cost does not grow with the table.

-- The two columns an insert changes come first and side by side: an update
-- logs only the bytes that differ, so the WAL record stays small.
CREATE TABLE billing.quota_counters (
	attachment_id integer NOT NULL REFERENCES billing.attachments (id) ON DELETE CASCADE,
	used bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
	usage_pending bigint NOT NULL DEFAULT 0 CHECK (usage_pending >= 0),
	cap bigint,                          -- cached limit; NULL = unlimited
	cap_valid_until timestamptz NOT NULL DEFAULT '-infinity',
	usage_day date,                      -- usage counted here until rolled up
	key text COLLATE "C" NOT NULL,       -- the owner (rooms) or the room (participants)
	owner_id text NOT NULL,              -- whose plan limits this counter
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	PRIMARY KEY (attachment_id, key)
) WITH (fillfactor = 20);
COMMENT ON TABLE billing.quota_counters IS
	'Rows counted per owner or room, with the cached limit; maintained by the quota triggers';
CREATE INDEX quota_counters_owner ON billing.quota_counters (owner_id);
-- How the trigger's fast path finds a counter: one hash bucket page, cheaper
-- than descending the primary key (which keeps the pair unique).
CREATE INDEX quota_counters_key ON billing.quota_counters USING hash (key);

-- Internal: the metric a counter's inserts are recorded as.
CREATE FUNCTION billing._quota_metric(attachment_id integer) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE a.kind WHEN 'rooms' THEN 'rooms_created' ELSE 'participants_joined' END
	  FROM billing.attachments a WHERE a.id = $1
$$;

-- Internal: the slow path of the quota trigger, taken when the one-statement
-- fast path did not apply (no counter yet, the cached limit is stale, or a new
-- day began). Creates and locks the counter, moves the previous day's usage
-- into billing.usage_daily, and returns what the C++ decision needs.
CREATE FUNCTION billing._quota_prepare(p_attachment integer, p_key text, p_at timestamptz,
									   OUT used bigint, OUT limits text, OUT plan_code text, OUT plan_name text,
									   OUT cap_valid_until timestamptz, OUT owner_id text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
	c billing.quota_counters;
	plan billing.subscription_plans;
	today date := (p_at AT TIME ZONE 'UTC')::date;
	owner text;
BEGIN
	SELECT * INTO c FROM billing.quota_counters q WHERE q.attachment_id = p_attachment AND q.key = p_key FOR UPDATE;
	IF NOT FOUND THEN
		SELECT * INTO STRICT att FROM billing.attachments a WHERE a.id = p_attachment;
		IF att.kind = 'rooms' THEN
			owner := p_key;
		ELSE
			-- a participant's room: its owner is looked up once, when its counter is made
			EXECUTE pg_catalog.format('SELECT %I::text FROM %s WHERE %I::text = $1',
									  att.parent_owner_column, att.parent_relation, att.parent_key_column)
			   INTO owner USING p_key;
		END IF;
		INSERT INTO billing.quota_counters AS q (attachment_id, key, owner_id, usage_day)
		VALUES (p_attachment, p_key, COALESCE(owner, ''), today)
		ON CONFLICT DO NOTHING;
		SELECT * INTO STRICT c FROM billing.quota_counters q WHERE q.attachment_id = p_attachment AND q.key = p_key FOR UPDATE;
	END IF;
	IF c.usage_day IS DISTINCT FROM today THEN
		IF c.usage_pending > 0 THEN
			INSERT INTO billing.usage_daily AS d (user_id, metric, day, quantity)
			VALUES (c.owner_id, billing._quota_metric(p_attachment), c.usage_day, c.usage_pending)
			ON CONFLICT ON CONSTRAINT usage_daily_pkey DO UPDATE SET quantity = d.quantity + EXCLUDED.quantity;
		END IF;
		UPDATE billing.quota_counters q SET usage_day = today, usage_pending = 0
		 WHERE q.attachment_id = p_attachment AND q.key = p_key;
	END IF;
	used := c.used;
	owner_id := c.owner_id;
	IF c.owner_id = '' THEN
		limits := '{}';  -- no owner: nothing to limit
		plan_code := '';
		plan_name := '';
		cap_valid_until := 'infinity';
		RETURN;
	END IF;
	plan := billing.effective_plan(c.owner_id, p_at);
	limits := plan.limits::text;
	plan_code := plan.code;
	plan_name := plan.name;
	-- The cached limit holds until something changes the plan (a trigger on
	-- subscriptions clears it) or a canceled subscription's period runs out.
	SELECT COALESCE(pg_catalog.min(s.current_period_end), 'infinity') INTO cap_valid_until
	  FROM billing.subscriptions s
	 WHERE s.user_id = c.owner_id AND s.ended_at IS NULL AND s.deleted_at IS NULL
	   AND s.status = 'canceled' AND s.current_period_end > p_at;
END
$$;

-- Internal: a plan change (or any subscription write) makes the cached limits
-- of that user's counters stale. Taking their row locks also serialises the
-- change with inserts racing it.
CREATE FUNCTION billing._quota_invalidate_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE billing.quota_counters q SET cap_valid_until = '-infinity'
	 WHERE q.owner_id = NEW.user_id AND q.cap_valid_until <> '-infinity';
	RETURN NULL;
END
$$;
CREATE TRIGGER quota_invalidate AFTER INSERT OR UPDATE ON billing.subscriptions
	FOR EACH ROW EXECUTE FUNCTION billing._quota_invalidate_user();

CREATE FUNCTION billing._quota_invalidate_plan() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.limits IS DISTINCT FROM OLD.limits THEN
		UPDATE billing.quota_counters q SET cap_valid_until = '-infinity' WHERE q.cap_valid_until <> '-infinity';
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER quota_invalidate AFTER UPDATE ON billing.subscription_plans
	FOR EACH ROW EXECUTE FUNCTION billing._quota_invalidate_plan();

-- The C++ trigger: counts rows in and out and refuses one too many (QB001).
CREATE FUNCTION billing._quota_trigger() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_quota_trigger';

-- TRUNCATE of an application table: nothing is counted any more.
CREATE FUNCTION billing._quota_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE billing.quota_counters q SET used = 0 WHERE q.attachment_id = TG_ARGV[0]::integer AND q.used <> 0;
	RETURN NULL;
END
$$;

-- A room given to another owner: its participants' counter follows.
CREATE FUNCTION billing._quota_room_owner_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	new_row jsonb := pg_catalog.to_jsonb(NEW);
BEGIN
	UPDATE billing.quota_counters q
	   SET owner_id = COALESCE(new_row ->> TG_ARGV[2], ''), cap_valid_until = '-infinity'
	 WHERE q.attachment_id = TG_ARGV[0]::integer AND q.key = new_row ->> TG_ARGV[1];
	RETURN NULL;
END
$$;

ALTER TABLE billing.attachments ADD COLUMN parent_key_column name;
ALTER TABLE billing.attachments ADD COLUMN counts_deleted_at boolean NOT NULL DEFAULT false;

-- Internal: installs the counting triggers and fills the counters from what
-- the table holds now. The table is locked so nothing slips in between.
CREATE FUNCTION billing._quota_attach(att billing.attachments) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	live text := CASE WHEN att.counts_deleted_at THEN 't.deleted_at IS NULL' ELSE 'true' END;
BEGIN
	EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', att.relation);
	DELETE FROM billing.quota_counters q WHERE q.attachment_id = att.id;
	IF att.kind = 'rooms' THEN
		EXECUTE pg_catalog.format(
			'INSERT INTO billing.quota_counters (attachment_id, key, owner_id, used)
			 SELECT %s, t.%I::text, t.%I::text, count(*) FROM %s t WHERE t.%I IS NOT NULL AND %s GROUP BY 2, 3',
			att.id, att.key_column, att.key_column, att.relation, att.key_column, live);
	ELSE
		EXECUTE pg_catalog.format(
			'INSERT INTO billing.quota_counters (attachment_id, key, owner_id, used)
			 SELECT %s, t.%I::text, COALESCE(r.%I::text, ''''), count(*)
			   FROM %s t LEFT JOIN %s r ON r.%I = t.%I
			  WHERE t.%I IS NOT NULL AND %s GROUP BY 2, 3',
			att.id, att.key_column, att.parent_owner_column, att.relation, att.parent_relation,
			att.parent_key_column, att.key_column, att.key_column, live);
	END IF;
	PERFORM billing._quota_create_triggers(att);
END
$$;

-- Internal: (re)creates the quota triggers of one attachment.
CREATE FUNCTION billing._quota_create_triggers(att billing.attachments) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	changed text := pg_catalog.format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', att.key_column)
		|| CASE WHEN att.counts_deleted_at THEN ' OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at' ELSE '' END;
	args text := pg_catalog.format('%L, %L, %L, %L', att.id, att.kind, att.key_column, att.counts_deleted_at);
	owner_watch text := 'billing_quota_room_owner_' || att.id;
BEGIN
	PERFORM billing._detach_triggers(att.relation, att.kind);
	IF att.kind = 'participants' THEN
		-- On the rooms table, named after this attachment (detach removes it).
		-- No "UPDATE OF": a column set by the application's own BEFORE
		-- trigger is not in the statement's SET list; WHEN sees the final row.
		IF EXISTS (SELECT FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid OPERATOR(pg_catalog.=) att.parent_relation
					 AND tg.tgname OPERATOR(pg_catalog.=) owner_watch) THEN
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', owner_watch, att.parent_relation);
		END IF;
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW
			 WHEN (OLD.%I IS DISTINCT FROM NEW.%I)
			 EXECUTE FUNCTION billing._quota_room_owner_changed(%L, %L, %L)',
			owner_watch, att.parent_relation, att.parent_owner_column, att.parent_owner_column,
			att.id, att.parent_key_column, att.parent_owner_column);
	END IF;
	-- AFTER ROW: a row counts once it is really there. A BEFORE trigger would
	-- count rows that INSERT ... ON CONFLICT then skips or turns into an update.
	-- A refusal still fails the statement as a whole, and the row lock on the
	-- counter keeps the limit exact. zz: after the application's own triggers.
	EXECUTE pg_catalog.format('CREATE TRIGGER billing_zz_quota_%s AFTER INSERT OR DELETE ON %s
		FOR EACH ROW EXECUTE FUNCTION billing._quota_trigger(%s)', att.kind, att.relation, args);
	EXECUTE pg_catalog.format('CREATE TRIGGER billing_zz_quota_%s_update AFTER UPDATE ON %s
		FOR EACH ROW WHEN (%s) EXECUTE FUNCTION billing._quota_trigger(%s)',
		att.kind, att.relation, changed, args);
	EXECUTE pg_catalog.format('CREATE TRIGGER billing_quota_%s_truncate AFTER TRUNCATE ON %s
		FOR EACH STATEMENT EXECUTE FUNCTION billing._quota_truncated(%L)', att.kind, att.relation, att.id);
END
$$;

-- Internal: drops the billing triggers of one kind from a table.
CREATE FUNCTION billing._detach_triggers(relation regclass, kind text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t name;
BEGIN
	FOR t IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
			  WHERE tg.tgrelid = relation AND NOT tg.tgisinternal
				AND (tg.tgname LIKE 'billing\_zz\_quota\_' || kind || '%' OR tg.tgname = 'billing_quota_' || kind || '_truncate')
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, relation);
	END LOOP;
END
$$;

-- Internal: does the table have a deleted_at column (soft delete)?
CREATE FUNCTION billing._has_deleted_at(relation regclass) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
					WHERE a.attrelid = $1 AND a.attname = 'deleted_at' AND a.attnum > 0 AND NOT a.attisdropped)
$$;

CREATE FUNCTION billing.attach_room_quota(rooms regclass, owner_column name) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
	counted bigint;
BEGIN
	IF rooms IS NULL OR owner_column IS NULL THEN
		RAISE EXCEPTION 'arguments must not be null' USING ERRCODE = '22023';
	END IF;
	PERFORM billing._check_column(rooms, owner_column);
	INSERT INTO billing.attachments AS a (kind, relation, key_column, counts_deleted_at)
	VALUES ('rooms', rooms, owner_column, billing._has_deleted_at(rooms))
	ON CONFLICT (relation, kind) DO UPDATE
	   SET key_column = EXCLUDED.key_column, counts_deleted_at = EXCLUDED.counts_deleted_at
	RETURNING * INTO att;
	PERFORM billing._quota_attach(att);
	SELECT COALESCE(pg_catalog.sum(q.used), 0) INTO counted FROM billing.quota_counters q WHERE q.attachment_id = att.id;
	RETURN counted;
END
$$;
COMMENT ON FUNCTION billing.attach_room_quota(regclass, name) IS
	'Enforces the plan''s room limit on the table; returns the rooms counted now';

CREATE FUNCTION billing.attach_participant_quota(participants regclass, room_column name, rooms regclass,
												 room_owner_column name) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
	room_key name;
	counted bigint;
BEGIN
	IF participants IS NULL OR room_column IS NULL OR rooms IS NULL OR room_owner_column IS NULL THEN
		RAISE EXCEPTION 'arguments must not be null' USING ERRCODE = '22023';
	END IF;
	PERFORM billing._check_column(participants, room_column);
	PERFORM billing._check_column(rooms, room_owner_column);
	SELECT a.attname INTO room_key
	  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	 WHERE i.indrelid = rooms AND i.indisprimary AND i.indnatts = 1;
	IF room_key IS NULL THEN
		RAISE EXCEPTION 'table % has no single-column primary key', rooms
			USING ERRCODE = '22023', HINT = 'Participants are counted per room, named by the rooms'' primary key.';
	END IF;
	INSERT INTO billing.attachments AS a (kind, relation, key_column, parent_relation, parent_owner_column,
										  parent_key_column, counts_deleted_at)
	VALUES ('participants', participants, room_column, rooms, room_owner_column, room_key,
			billing._has_deleted_at(participants))
	ON CONFLICT (relation, kind) DO UPDATE
	   SET key_column = EXCLUDED.key_column, parent_relation = EXCLUDED.parent_relation,
		   parent_owner_column = EXCLUDED.parent_owner_column, parent_key_column = EXCLUDED.parent_key_column,
		   counts_deleted_at = EXCLUDED.counts_deleted_at
	RETURNING * INTO att;
	PERFORM billing._quota_attach(att);
	SELECT COALESCE(pg_catalog.sum(q.used), 0) INTO counted FROM billing.quota_counters q WHERE q.attachment_id = att.id;
	RETURN counted;
END
$$;
COMMENT ON FUNCTION billing.attach_participant_quota(regclass, name, regclass, name) IS
	'Enforces the plan''s participants-per-room limit on the table; returns the participants counted now';

-- The limit a plan sets for a quota: NULL = unlimited. (The C++ trigger parses
-- the same JSON with the core's ParseLimit; this is for reports.)
CREATE FUNCTION billing._plan_limit(limits jsonb, quota text) RETURNS bigint
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN pg_catalog.jsonb_typeof(limits -> quota) = 'number' THEN (limits ->> quota)::bigint END
$$;

CREATE FUNCTION billing.quota(user_id text, quota text, at timestamptz DEFAULT pg_catalog.now(),
							  OUT "limit" bigint, OUT used bigint, OUT remaining bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	plan billing.subscription_plans;
BEGIN
	IF user_id IS NULL OR quota IS NULL THEN
		RAISE EXCEPTION 'arguments must not be null' USING ERRCODE = '22023';
	END IF;
	IF quota NOT IN ('rooms', 'participants_per_room') THEN
		RAISE EXCEPTION 'unknown quota "%"', quota
			USING ERRCODE = '22023', HINT = 'Quotas are rooms and participants_per_room.';
	END IF;
	plan := billing.effective_plan(user_id, at);
	"limit" := billing._plan_limit(plan.limits, quota);
	-- rooms: the user's rooms; participants_per_room: the fullest of their rooms
	SELECT COALESCE(CASE WHEN quota = 'rooms' THEN pg_catalog.sum(q.used) ELSE pg_catalog.max(q.used) END, 0)
	  INTO used
	  FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
	 WHERE q.owner_id = quota.user_id AND a.kind = CASE WHEN quota = 'rooms' THEN 'rooms' ELSE 'participants' END;
	remaining := pg_catalog.int8larger("limit" - used, 0);
END
$$;
COMMENT ON FUNCTION billing.quota(text, text, timestamptz) IS
	'Limit (NULL = unlimited), used and remaining for rooms or participants_per_room (the fullest room)';

CREATE FUNCTION billing.has_feature(user_id text, feature text, at timestamptz DEFAULT pg_catalog.now())
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	-- true, a positive number or a non-empty string switch a feature on
	SELECT CASE pg_catalog.jsonb_typeof(p.features -> $2)
			   WHEN 'boolean' THEN (p.features ->> $2)::boolean
			   WHEN 'number' THEN (p.features ->> $2)::numeric > 0
			   WHEN 'string' THEN p.features ->> $2 <> ''
			   ELSE false END
	  FROM billing.effective_plan($1, $3) p
$$;
COMMENT ON FUNCTION billing.has_feature(text, text, timestamptz) IS 'Whether the user''s effective plan has the feature';

CREATE FUNCTION billing.over_quota(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (user_id text, quota text, "limit" bigint, used bigint, room text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH owners AS (
		SELECT q.owner_id, a.kind, q.key, q.used
		  FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
		 WHERE q.owner_id <> '' AND q.used > 0),
	limited AS (
		SELECT o.*, billing._plan_limit(p.limits, CASE o.kind WHEN 'rooms' THEN 'rooms' ELSE 'participants_per_room' END) AS cap
		  FROM owners o CROSS JOIN LATERAL billing.effective_plan(o.owner_id, at) p)
	SELECT l.owner_id, CASE l.kind WHEN 'rooms' THEN 'rooms' ELSE 'participants_per_room' END, l.cap, l.used,
		   CASE WHEN l.kind = 'participants' THEN l.key END
	  FROM limited l
	 WHERE l.cap IS NOT NULL AND l.used > l.cap
	 ORDER BY 1, 2, 5
$$;
COMMENT ON FUNCTION billing.over_quota(timestamptz) IS
	'Users (and rooms) whose usage exceeds their effective limits, e.g. after a downgrade';

-- Recounts every attached table and repairs counters that drifted (rows
-- written with the triggers disabled, say). Locks each table against writes
-- while it counts it.
CREATE FUNCTION billing.reconcile_quotas()
RETURNS TABLE (relation regclass, key text, counted_before bigint, counted_now bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
	live text;
BEGIN
	FOR att IN SELECT * FROM billing.attachments a WHERE a.kind IN ('rooms', 'participants') ORDER BY a.id LOOP
		EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', att.relation);
		live := CASE WHEN att.counts_deleted_at THEN 't.deleted_at IS NULL' ELSE 'true' END;
		RETURN QUERY EXECUTE pg_catalog.format(
			'WITH actual AS (
				SELECT t.%1$I::text AS key, count(*) AS n FROM %2$s t WHERE t.%1$I IS NOT NULL AND %3$s GROUP BY 1),
			 diff AS (
				SELECT COALESCE(a.key, q.key) AS key, COALESCE(q.used, 0) AS before, COALESCE(a.n, 0) AS now
				  FROM actual a FULL JOIN (SELECT * FROM billing.quota_counters WHERE attachment_id = %4$s) q ON q.key = a.key
				 WHERE COALESCE(q.used, 0) <> COALESCE(a.n, 0)),
			 fixed AS (
				INSERT INTO billing.quota_counters AS c (attachment_id, key, owner_id, used)
				SELECT %4$s, d.key, %5$s, d.now FROM diff d
				ON CONFLICT (attachment_id, key) DO UPDATE SET used = EXCLUDED.used, cap_valid_until = ''-infinity''
				RETURNING c.key)
			 SELECT %2$L::regclass, d.key, d.before, d.now FROM diff d ORDER BY d.key',
			att.key_column, att.relation, live, att.id,
			CASE WHEN att.kind = 'rooms' THEN 'd.key'
				 ELSE pg_catalog.format('COALESCE((SELECT r.%I::text FROM %s r WHERE r.%I::text = d.key), '''')',
										att.parent_owner_column, att.parent_relation, att.parent_key_column) END);
	END LOOP;
END
$$;
COMMENT ON FUNCTION billing.reconcile_quotas() IS
	'Recounts attached tables, repairs drifted counters and returns what it repaired';
-- Usage (SPEC §4): events in billing.usage_records, rolled up incrementally
-- into daily per-user, per-metric totals in billing.usage_daily. Days are UTC.
-- The quota triggers count rooms_created and participants_joined in their
-- counter rows (usage_pending), so an insert writes nothing more; the rollup
-- moves those counts into usage_daily too.

CREATE FUNCTION billing.record_usage(user_id text, metric text, quantity bigint DEFAULT 1,
									 at timestamptz DEFAULT pg_catalog.now(), idempotency_key text DEFAULT NULL)
RETURNS billing.usage_records
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rec billing.usage_records;
BEGIN
	IF user_id IS NULL OR user_id = '' THEN
		RAISE EXCEPTION 'user id must not be empty' USING ERRCODE = '22023';
	END IF;
	IF metric IS NULL OR metric !~ '^[a-z][a-z0-9_.]*$' THEN
		RAISE EXCEPTION 'invalid metric name "%"', metric
			USING ERRCODE = '22023', DETAIL = 'Metric names are lower-case letters, digits, "_" and ".", starting with a letter.';
	END IF;
	IF quantity IS NULL OR quantity < 0 THEN
		RAISE EXCEPTION 'usage quantity must not be negative' USING ERRCODE = '22023',
			DETAIL = pg_catalog.format('Quantity given: %s.', quantity);
	END IF;
	IF at IS NULL OR NOT pg_catalog.isfinite(at) THEN
		RAISE EXCEPTION 'argument "at" must be a finite timestamp' USING ERRCODE = '22023';
	END IF;
	INSERT INTO billing.usage_records AS r (user_id, subscription_id, metric, quantity, recorded_at, idempotency_key)
	VALUES ($1, (SELECT s.id FROM billing.subscriptions s
				  WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.deleted_at IS NULL),
			$2, $3, $4, $5)
	ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING * INTO rec;
	IF rec.id IS NULL THEN
		-- the same key again: nothing new is recorded
		SELECT * INTO rec FROM billing.usage_records r WHERE r.user_id = $1 AND r.idempotency_key = $5;
	END IF;
	RETURN rec;
END
$$;
COMMENT ON FUNCTION billing.record_usage(text, text, bigint, timestamptz, text) IS
	'Records metered usage; a repeated idempotency key records nothing new';

-- Adds what arrived since the last rollup (records not yet rolled up, and the
-- counts the quota triggers hold) to the daily totals, up to `upto`.
-- Returns how many records and counters it moved.
CREATE FUNCTION billing.rollup_usage(upto timestamptz DEFAULT pg_catalog.now()) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	records bigint;
	counters bigint;
	upto_day date := (upto AT TIME ZONE 'UTC')::date;
BEGIN
	IF upto IS NULL OR NOT pg_catalog.isfinite(upto) THEN
		RAISE EXCEPTION 'argument "upto" must be a finite timestamp' USING ERRCODE = '22023';
	END IF;
	-- The partial index on NOT rolled_up makes this read only the new rows;
	-- marking them under their row locks makes concurrent rollups add each once.
	WITH taken AS (
		UPDATE billing.usage_records r SET rolled_up = true
		 WHERE NOT r.rolled_up AND r.recorded_at < upto AND r.deleted_at IS NULL
		RETURNING r.user_id, r.metric, (r.recorded_at AT TIME ZONE 'UTC')::date AS day, r.quantity),
	summed AS (
		SELECT t.user_id, t.metric, t.day, pg_catalog.sum(t.quantity) AS quantity, pg_catalog.count(*) AS n
		  FROM taken t GROUP BY 1, 2, 3),
	added AS (
		INSERT INTO billing.usage_daily AS d (user_id, metric, day, quantity)
		SELECT s.user_id, s.metric, s.day, s.quantity FROM summed s
		ON CONFLICT ON CONSTRAINT usage_daily_pkey DO UPDATE SET quantity = d.quantity + EXCLUDED.quantity)
	SELECT COALESCE(pg_catalog.sum(s.n), 0) INTO records FROM summed s;

	WITH locked AS (
		SELECT q.attachment_id, q.key, q.owner_id, q.usage_day, q.usage_pending
		  FROM billing.quota_counters q
		 WHERE q.usage_pending > 0 AND q.usage_day <= upto_day AND q.owner_id <> ''
		   FOR UPDATE),
	cleared AS (
		UPDATE billing.quota_counters q SET usage_pending = 0
		  FROM locked l WHERE q.attachment_id = l.attachment_id AND q.key = l.key
		RETURNING l.owner_id, billing._quota_metric(l.attachment_id) AS metric, l.usage_day, l.usage_pending),
	added AS (
		INSERT INTO billing.usage_daily AS d (user_id, metric, day, quantity)
		SELECT c.owner_id, c.metric, c.usage_day, pg_catalog.sum(c.usage_pending) FROM cleared c GROUP BY 1, 2, 3
		ON CONFLICT ON CONSTRAINT usage_daily_pkey DO UPDATE SET quantity = d.quantity + EXCLUDED.quantity)
	SELECT pg_catalog.count(*) INTO counters FROM cleared;
	RETURN records + counters;
END
$$;
COMMENT ON FUNCTION billing.rollup_usage(timestamptz) IS
	'Adds usage that arrived since the last rollup to the daily totals; run_maintenance calls it';

-- Exact usage for whole UTC days: from's day (inclusive) to to's day
-- (exclusive). Rolled-up days plus everything not rolled up yet.
CREATE FUNCTION billing.usage(user_id text, metric text, from_time timestamptz, to_time timestamptz)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH span AS (SELECT ($3 AT TIME ZONE 'UTC')::date AS d0, ($4 AT TIME ZONE 'UTC')::date AS d1)
	SELECT (COALESCE((SELECT pg_catalog.sum(d.quantity) FROM billing.usage_daily d, span
					   WHERE d.user_id = $1 AND d.metric = $2 AND d.day >= span.d0 AND d.day < span.d1
						 AND d.deleted_at IS NULL), 0)
		  + COALESCE((SELECT pg_catalog.sum(r.quantity) FROM billing.usage_records r, span
					   WHERE r.user_id = $1 AND r.metric = $2 AND NOT r.rolled_up AND r.deleted_at IS NULL
						 AND (r.recorded_at AT TIME ZONE 'UTC')::date >= span.d0
						 AND (r.recorded_at AT TIME ZONE 'UTC')::date < span.d1), 0)
		  + COALESCE((SELECT pg_catalog.sum(q.usage_pending) FROM billing.quota_counters q, span
					   WHERE q.owner_id = $1 AND billing._quota_metric(q.attachment_id) = $2
						 AND q.usage_day >= span.d0 AND q.usage_day < span.d1), 0))::bigint
$$;
COMMENT ON FUNCTION billing.usage(text, text, timestamptz, timestamptz) IS
	'Exact usage of a metric over whole UTC days [from, to), rollups plus the tail';
-- Subscription lifecycle (SPEC §3). The functions are C++ (src/glue/lifecycle.cpp);
-- decisions are made in the core (src/core/subscription.cpp), SQL only stores.

-- Notification outbox: each notification exactly once (dedupe_key), also sent
-- with NOTIFY billing_events so a listener can pick it up at once.
CREATE TABLE billing.notifications (
	id bigserial PRIMARY KEY,
	user_id text NOT NULL,
	subscription_id bigint REFERENCES billing.subscriptions (id),
	kind text NOT NULL CHECK (kind IN ('trial_will_end', 'renewal_upcoming', 'payment_failed', 'subscription_ended')),
	dedupe_key text NOT NULL UNIQUE,
	payload jsonb NOT NULL DEFAULT '{}',
	due_at timestamptz NOT NULL,
	sent_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.notifications IS 'Outbox of notifications to send (trial ending, renewal, payment failed, ended)';
CREATE INDEX notifications_unsent ON billing.notifications (due_at) WHERE sent_at IS NULL;
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.notifications
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();

-- Exact conversions between timestamptz and the core's microseconds since 1970.
CREATE FUNCTION billing._micros(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT (EXTRACT(epoch FROM t) * 1000000)::bigint
$$;

CREATE FUNCTION billing._interval_micros(i interval) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT (EXTRACT(epoch FROM i) * 1000000)::bigint
$$;

-- Internal: a human-readable, unique invoice number such as INV-202601-000042.
CREATE FUNCTION billing._next_invoice_number(at timestamptz) RETURNS text
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
	SELECT 'INV-' || pg_catalog.to_char(at AT TIME ZONE 'UTC', 'YYYYMM') || '-'
		|| pg_catalog.lpad(pg_catalog.nextval('billing.invoice_number_seq')::text, 6, '0')
$$;

-- Internal: queues a notification once and announces it.
CREATE FUNCTION billing._notify(user_id text, subscription_id bigint, kind text, dedupe_key text, due_at timestamptz)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	new_id bigint;
BEGIN
	INSERT INTO billing.notifications (user_id, subscription_id, kind, dedupe_key, due_at, payload)
	VALUES ($1, $2, $3, $4, $5,
			pg_catalog.jsonb_build_object('user_id', $1, 'subscription_id', $2, 'kind', $3, 'due_at', $5))
	ON CONFLICT (dedupe_key) DO NOTHING
	RETURNING id INTO new_id;
	IF new_id IS NULL THEN
		RETURN false;
	END IF;
	PERFORM pg_catalog.pg_notify('billing_events',
		pg_catalog.jsonb_build_object('id', new_id, 'user_id', $1, 'subscription_id', $2, 'kind', $3)::text);
	RETURN true;
END
$$;

-- Internal: notifications that time alone makes due (no state change).
CREATE FUNCTION billing._queue_upcoming(at timestamptz) RETURNS TABLE (action text, count bigint)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT 'notified_trial_will_end', pg_catalog.count(*) FILTER (WHERE billing._notify(
			s.user_id, s.id, 'trial_will_end', 'trial_will_end:' || s.id || ':' || billing._micros(s.trial_end), at))
	  FROM billing.subscriptions s
	 WHERE s.status = 'trialing' AND s.deleted_at IS NULL AND s.ended_at IS NULL
	   AND s.trial_end > at AND s.trial_end <= at + interval '3 days'
	UNION ALL
	SELECT 'notified_renewal_upcoming', pg_catalog.count(*) FILTER (WHERE billing._notify(
			s.user_id, s.id, 'renewal_upcoming', 'renewal_upcoming:' || s.id || ':' || billing._micros(s.current_period_end), at))
	  FROM billing.subscriptions s
	 WHERE s.status = 'active' AND s.deleted_at IS NULL AND s.ended_at IS NULL
	   AND NOT s.cancel_at_period_end AND s.price_cents > 0
	   AND s.current_period_end > at AND s.current_period_end <= at + interval '7 days'
$$;

CREATE FUNCTION billing.subscribe(user_id text, plan_code text, at timestamptz DEFAULT pg_catalog.now(),
								  with_trial boolean DEFAULT true)
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_subscribe';
COMMENT ON FUNCTION billing.subscribe(text, text, timestamptz, boolean) IS
	'Subscribes a user to a plan: free is active, paid starts trialing (trial available) or incomplete';

CREATE FUNCTION billing.start_trial(user_id text, plan_code text, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_start_trial';
COMMENT ON FUNCTION billing.start_trial(text, text, timestamptz) IS
	'Starts a trial of a paid plan; one trial per user and tier';

CREATE FUNCTION billing.record_payment(subscription_id bigint, amount_cents bigint, currency text, succeeded boolean,
									   at timestamptz DEFAULT pg_catalog.now(), external_id text DEFAULT NULL)
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_record_payment';
COMMENT ON FUNCTION billing.record_payment(bigint, bigint, text, boolean, timestamptz, text) IS
	'Stores a payment; success activates or renews, failure moves to past_due; idempotent on external_id';

CREATE FUNCTION billing.cancel(subscription_id bigint, at_period_end boolean DEFAULT true,
							   at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_cancel';
COMMENT ON FUNCTION billing.cancel(bigint, boolean, timestamptz) IS
	'Cancels at period end (entitlements until then) or now';

CREATE FUNCTION billing.reactivate(subscription_id bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_reactivate';
COMMENT ON FUNCTION billing.reactivate(bigint, timestamptz) IS 'Undoes a pending cancel before the period ends';

CREATE FUNCTION billing.pause(subscription_id bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_pause';
COMMENT ON FUNCTION billing.pause(bigint, timestamptz) IS 'Pauses an active subscription; entitlements fall back to Free';

CREATE FUNCTION billing.resume(subscription_id bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_resume';
COMMENT ON FUNCTION billing.resume(bigint, timestamptz) IS 'Resumes a paused subscription; the period moves by the paused time';

CREATE FUNCTION billing.change_plan(subscription_id bigint, plan_code text, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscriptions
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_change_plan';
COMMENT ON FUNCTION billing.change_plan(bigint, text, timestamptz) IS
	'Upgrades now with proration, or schedules a downgrade at period end';

CREATE FUNCTION billing.preview_change(subscription_id bigint, plan_code text, at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (description text, amount_cents bigint, currency text)
LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_preview_change';
COMMENT ON FUNCTION billing.preview_change(bigint, text, timestamptz) IS
	'The invoice lines change_plan would bill now; their sum is the amount due';

CREATE FUNCTION billing.refund(payment_id bigint, amount_cents bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.payments
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_refund';
COMMENT ON FUNCTION billing.refund(bigint, bigint, timestamptz) IS
	'Refunds (part of) a payment as a negative payment, never more than was paid';

CREATE FUNCTION billing.run_maintenance(at timestamptz DEFAULT pg_catalog.now(), batch_size integer DEFAULT NULL)
RETURNS TABLE (action text, count bigint)
LANGUAGE c VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_run_maintenance';
COMMENT ON FUNCTION billing.run_maintenance(timestamptz, integer) IS
	'Applies what time made due (trial ends, renewals, scheduled changes, period-end cancels, grace and incomplete expiry), queues notifications, rolls up usage; idempotent';

-- For pg_cron: runs maintenance in batches, committing after each, so a large
-- backlog never becomes one giant transaction. CALL it outside a transaction.
-- (A procedure with a SET clause cannot COMMIT, so this one pins nothing and
-- qualifies every name and operator instead.)
CREATE PROCEDURE billing.run_maintenance_batches(at timestamptz DEFAULT NULL, batch_size integer DEFAULT 1000)
LANGUAGE plpgsql AS $$
DECLARE
	run_at timestamptz := COALESCE(at, pg_catalog.now());
	done bigint;
BEGIN
	LOOP
		SELECT COALESCE(pg_catalog.sum(m.count) FILTER (WHERE m.action OPERATOR(pg_catalog.=) 'subscriptions_processed'), 0)
		  INTO done FROM billing.run_maintenance(run_at, batch_size) m;
		COMMIT;
		EXIT WHEN done OPERATOR(pg_catalog.<) batch_size;
	END LOOP;
END
$$;
COMMENT ON PROCEDURE billing.run_maintenance_batches(timestamptz, integer) IS
	'run_maintenance in committed batches, for pg_cron';

CREATE FUNCTION billing.transitions()
RETURNS TABLE (from_status billing.subscription_status, action text, to_status billing.subscription_status, effects text)
LANGUAGE c IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_transitions';
COMMENT ON FUNCTION billing.transitions() IS 'The subscription state machine: every allowed transition';
-- Reports for DBAs and finance (SPEC §6). Every function takes explicit times
-- and groups money by currency; amounts are exact (numeric, never float).
-- Time series come back as (time, metric, value) rows for Grafana.

-- Internal: was this subscription paying at `at`? Paying means a paid plan
-- after its trial, not paused, not incomplete, and not yet ended. A canceled
-- subscription pays until its period ends (Stripe keeps it active until then);
-- one that ended unpaid (trial or incomplete) never paid.
CREATE FUNCTION billing._paying_at(s billing.subscriptions, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT s.price_cents > 0
	   AND s.deleted_at IS NULL
	   AND s.billing_interval <> 'lifetime'
	   AND s.started_at <= at
	   AND (s.ended_at IS NULL OR s.ended_at > at)
	   AND (s.trial_end IS NULL OR s.trial_end <= at)
	   AND COALESCE(s.end_reason, '') NOT IN ('trial_ended', 'incomplete_expired')
	   AND s.status NOT IN ('incomplete', 'trialing')
	   AND NOT (s.status = 'paused' AND s.paused_at <= at)
	   AND NOT (s.status = 'canceled' AND s.ended_at IS NULL AND s.current_period_end <= at)
$$;

-- Internal: the monthly-normalized price (yearly / 12, lifetime 0), exact.
CREATE FUNCTION billing._monthly_cents(s billing.subscriptions) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE s.billing_interval WHEN 'monthly' THEN s.price_cents::numeric
								   WHEN 'yearly' THEN s.price_cents::numeric / 12
								   ELSE 0 END
$$;

CREATE FUNCTION billing.mrr(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (currency text, mrr_cents bigint, subscriptions bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT s.currency, pg_catalog.round(pg_catalog.sum(billing._monthly_cents(s)))::bigint, pg_catalog.count(*)
	  FROM billing.subscriptions s
	 WHERE billing._paying_at(s, at)
	 GROUP BY s.currency
	 ORDER BY s.currency
$$;
COMMENT ON FUNCTION billing.mrr(timestamptz) IS
	'Monthly recurring revenue by currency (Stripe''s definition: yearly counts 1/12, trials and free count 0)';

CREATE FUNCTION billing.arr(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (currency text, arr_cents bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT s.currency, pg_catalog.round(12 * pg_catalog.sum(billing._monthly_cents(s)))::bigint
	  FROM billing.subscriptions s
	 WHERE billing._paying_at(s, at)
	 GROUP BY s.currency
	 ORDER BY s.currency
$$;
COMMENT ON FUNCTION billing.arr(timestamptz) IS 'Annual recurring revenue: 12 x MRR, by currency';

CREATE FUNCTION billing.active_subscriptions(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (tier billing.plan_tier, status billing.subscription_status, subscriptions bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.tier, s.status, pg_catalog.count(*)
	  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
	 WHERE s.deleted_at IS NULL AND s.started_at <= at AND (s.ended_at IS NULL OR s.ended_at > at)
	 GROUP BY p.tier, s.status
	 ORDER BY p.tier, s.status
$$;
COMMENT ON FUNCTION billing.active_subscriptions(timestamptz) IS
	'Subscriptions current at a time, by tier and status (status as stored now)';

CREATE FUNCTION billing.plan_distribution(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (plan_code text, tier billing.plan_tier, users bigint, share numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH users AS (
		SELECT DISTINCT s.user_id FROM billing.subscriptions s
		 WHERE s.deleted_at IS NULL AND s.started_at <= at),
	plans AS (
		SELECT (billing.effective_plan(u.user_id, at)).* FROM users u)
	SELECT p.code, p.tier, pg_catalog.count(*),
		   pg_catalog.round(pg_catalog.count(*)::numeric / NULLIF(pg_catalog.sum(pg_catalog.count(*)) OVER (), 0), 4)
	  FROM plans p
	 GROUP BY p.code, p.tier
	 ORDER BY pg_catalog.count(*) DESC, p.code
$$;
COMMENT ON FUNCTION billing.plan_distribution(timestamptz) IS 'Users per effective plan, with their share';

CREATE FUNCTION billing.churn(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (currency text, customers_at_start bigint, customers_churned bigint, customer_churn numeric,
			   mrr_at_start_cents bigint, mrr_churned_cents bigint, revenue_churn numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF from_time IS NULL OR to_time IS NULL OR to_time <= from_time THEN
		RAISE EXCEPTION 'report period must have a start before its end' USING ERRCODE = '22023';
	END IF;
	-- A customer churns when what paid at the start no longer pays at the end
	-- and the user has no paying subscription then (a plan change is not churn).
	RETURN QUERY
	WITH start AS (
		SELECT s.user_id, s.currency, billing._monthly_cents(s) AS mrr
		  FROM billing.subscriptions s WHERE billing._paying_at(s, from_time)),
	still AS (
		SELECT DISTINCT s.user_id FROM billing.subscriptions s WHERE billing._paying_at(s, to_time))
	SELECT st.currency, pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE sl.user_id IS NULL),
		   pg_catalog.round(pg_catalog.count(*) FILTER (WHERE sl.user_id IS NULL)::numeric / pg_catalog.count(*), 4),
		   pg_catalog.round(pg_catalog.sum(st.mrr))::bigint,
		   pg_catalog.round(COALESCE(pg_catalog.sum(st.mrr) FILTER (WHERE sl.user_id IS NULL), 0))::bigint,
		   pg_catalog.round(COALESCE(pg_catalog.sum(st.mrr) FILTER (WHERE sl.user_id IS NULL), 0) / NULLIF(pg_catalog.sum(st.mrr), 0), 4)
	  FROM start st LEFT JOIN still sl ON sl.user_id = st.user_id
	 GROUP BY st.currency
	 ORDER BY st.currency;
END
$$;
COMMENT ON FUNCTION billing.churn(timestamptz, timestamptz) IS
	'Customer and revenue churn between two times, by currency';

-- Internal: net money received (payments minus refunds) in [from, to).
CREATE FUNCTION billing._net_payments(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (user_id text, currency text, paid_at timestamptz, amount_cents bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.user_id, p.currency, p.paid_at, p.amount_cents
	  FROM billing.payments p
	 WHERE p.status = 'succeeded' AND p.deleted_at IS NULL AND p.paid_at >= from_time AND p.paid_at < to_time
$$;

CREATE FUNCTION billing.arpu(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (currency text, revenue_cents bigint, paying_users bigint, arpu_cents bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT n.currency, pg_catalog.sum(n.amount_cents)::bigint,
		   pg_catalog.count(DISTINCT n.user_id) FILTER (WHERE n.amount_cents > 0),
		   pg_catalog.round(pg_catalog.sum(n.amount_cents)::numeric
				/ NULLIF(pg_catalog.count(DISTINCT n.user_id) FILTER (WHERE n.amount_cents > 0), 0))::bigint
	  FROM billing._net_payments(from_time, to_time) n
	 GROUP BY n.currency
	 ORDER BY n.currency
$$;
COMMENT ON FUNCTION billing.arpu(timestamptz, timestamptz) IS
	'Average revenue per paying user between two times (net of refunds), by currency';

CREATE FUNCTION billing.trial_conversion(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (tier billing.plan_tier, trials bigint, converted bigint, still_trialing bigint, conversion numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	-- A trial converted when its subscription got a paid first period.
	WITH trials AS (
		SELECT p.tier, s.billing_anchor IS NOT NULL AS converted,
			   s.status = 'trialing' AS trialing
		  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
		 WHERE s.trial_start >= from_time AND s.trial_start < to_time AND s.deleted_at IS NULL
		   AND COALESCE(s.end_reason, '') <> 'plan_changed')
	SELECT t.tier, pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE t.converted),
		   pg_catalog.count(*) FILTER (WHERE t.trialing),
		   pg_catalog.round(pg_catalog.count(*) FILTER (WHERE t.converted)::numeric / pg_catalog.count(*), 4)
	  FROM trials t
	 GROUP BY t.tier
	 ORDER BY t.tier
$$;
COMMENT ON FUNCTION billing.trial_conversion(timestamptz, timestamptz) IS
	'Trials started between two times and how many became paid, by tier';

-- Internal: the buckets of a time series; grain is hour, day, week, month or year.
CREATE FUNCTION billing._buckets(from_time timestamptz, to_time timestamptz, grain text)
RETURNS TABLE (bucket timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF grain IS NULL OR grain NOT IN ('hour', 'day', 'week', 'month', 'year') THEN
		RAISE EXCEPTION 'unknown grain "%"', grain
			USING ERRCODE = '22023', HINT = 'Use hour, day, week, month or year.';
	END IF;
	IF from_time IS NULL OR to_time IS NULL OR to_time <= from_time THEN
		RAISE EXCEPTION 'report period must have a start before its end' USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
	SELECT g FROM pg_catalog.generate_series(pg_catalog.date_trunc(grain, from_time, 'UTC'), to_time - interval '1 microsecond',
											 ('1 ' || grain)::interval) g;
END
$$;

CREATE FUNCTION billing.revenue(from_time timestamptz, to_time timestamptz, grain text DEFAULT 'day')
RETURNS TABLE ("time" timestamptz, metric text, value numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH b AS (SELECT bucket FROM billing._buckets(from_time, to_time, grain)),
	cur AS (SELECT DISTINCT currency FROM billing.payments),
	money AS (
		SELECT pg_catalog.date_trunc(grain, n.paid_at, 'UTC') AS bucket, n.currency, pg_catalog.sum(n.amount_cents) AS cents
		  FROM billing._net_payments(from_time, to_time) n
		 GROUP BY 1, 2)
	SELECT b.bucket, 'revenue_cents_' || c.currency, COALESCE(m.cents, 0)
	  FROM b CROSS JOIN cur c
	  LEFT JOIN money m ON m.bucket = b.bucket AND m.currency = c.currency
	 ORDER BY 1, 2
$$;
COMMENT ON FUNCTION billing.revenue(timestamptz, timestamptz, text) IS
	'Net revenue per time bucket and currency as (time, metric, value) rows';

CREATE FUNCTION billing.usage_trends(from_time timestamptz, to_time timestamptz, grain text DEFAULT 'day')
RETURNS TABLE ("time" timestamptz, metric text, value numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	-- Rolled-up days plus what is not rolled up yet (day granularity, UTC).
	WITH b AS (SELECT bucket FROM billing._buckets(from_time, to_time, grain)),
	daily AS (
		SELECT d.day::timestamp AT TIME ZONE 'UTC' AS t, d.metric, d.quantity FROM billing.usage_daily d
		 WHERE d.deleted_at IS NULL
		UNION ALL
		SELECT r.recorded_at, r.metric, r.quantity FROM billing.usage_records r
		 WHERE NOT r.rolled_up AND r.deleted_at IS NULL),
	agg AS (
		SELECT pg_catalog.date_trunc(grain, d.t, 'UTC') AS bucket, d.metric, pg_catalog.sum(d.quantity) AS total
		  FROM daily d WHERE d.t >= from_time AND d.t < to_time GROUP BY 1, 2)
	SELECT a.bucket, a.metric, a.total FROM agg a JOIN b ON b.bucket = a.bucket
	 ORDER BY 1, 2
$$;
COMMENT ON FUNCTION billing.usage_trends(timestamptz, timestamptz, text) IS
	'Usage per time bucket and metric as (time, metric, value) rows';

CREATE FUNCTION billing.daily_report(day date)
RETURNS TABLE (metric text, value bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	WITH bounds AS (SELECT day::timestamp AT TIME ZONE 'UTC' AS d0, (day + 1)::timestamp AT TIME ZONE 'UTC' AS d1),
	report (ord, metric, value) AS (
	SELECT 0, 'active_' || a.tier, pg_catalog.sum(a.subscriptions)::bigint
	  FROM bounds, billing.active_subscriptions(bounds.d1) a
	 WHERE a.status NOT IN ('incomplete', 'paused')  -- an ended one was active then
	 GROUP BY a.tier
	UNION ALL
	SELECT 10, 'new_trials', pg_catalog.count(*) FROM bounds, billing.subscriptions s
	 WHERE s.trial_start >= bounds.d0 AND s.trial_start < bounds.d1 AND COALESCE(s.end_reason, '') <> 'plan_changed'
	UNION ALL
	SELECT 11, 'conversions', pg_catalog.count(*) FROM bounds, billing.subscriptions s
	 WHERE s.trial_start IS NOT NULL AND s.billing_anchor >= bounds.d0 AND s.billing_anchor < bounds.d1
	UNION ALL
	SELECT 12, 'cancellations', pg_catalog.count(*) FROM bounds, billing.subscriptions s
	 WHERE s.canceled_at >= bounds.d0 AND s.canceled_at < bounds.d1 AND COALESCE(s.end_reason, '') <> 'plan_changed'
	UNION ALL
	SELECT 13, 'failed_payments', pg_catalog.count(*) FROM bounds, billing.payments p
	 WHERE p.status = 'failed' AND p.paid_at >= bounds.d0 AND p.paid_at < bounds.d1)
	SELECT r.metric, r.value FROM report r ORDER BY r.ord, r.metric
$$;
COMMENT ON FUNCTION billing.daily_report(date) IS
	'One day at a glance: active by tier, new trials, conversions, cancellations, failed payments';
-- Stripe (SPEC §5): signature verification, webhook ingestion applied exactly
-- once, and the parameters for Stripe Checkout. The extension never calls
-- Stripe; the application hands every webhook request to billing.stripe_ingest.
--
-- Stripe is the source of truth for the subscriptions it manages: their
-- status, plan (from the price id) and periods mirror the latest event Stripe
-- sent. Card details are never stored.

-- Every webhook event ever received, once. A redelivered id is a duplicate.
CREATE TABLE billing.stripe_events (
	id text PRIMARY KEY CHECK (id <> ''),
	type text NOT NULL,
	object_id text,
	created timestamptz NOT NULL,  -- the event's time at Stripe
	payload jsonb NOT NULL,  -- as received, without payment_method_details and card objects
	result text NOT NULL CHECK (result IN ('applied', 'stale', 'ignored')),
	reason text,  -- why an event was ignored or stale
	received_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.stripe_events IS 'Stripe webhook events received, each applied at most once';
CREATE INDEX stripe_events_object ON billing.stripe_events (object_id, created);
CREATE INDEX stripe_events_received ON billing.stripe_events (received_at);

-- Per Stripe object, the newest event applied to it: an older event for the
-- same object (by created, then event id) is stale and changes nothing.
CREATE TABLE billing.stripe_objects (
	object_id text PRIMARY KEY,
	object_type text,
	last_event_created timestamptz,
	last_event_id text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	CONSTRAINT watermark_complete CHECK ((last_event_created IS NULL) = (last_event_id IS NULL))
);
COMMENT ON TABLE billing.stripe_objects IS 'The newest Stripe event applied per Stripe object (out-of-order protection)';

-- Which billing user a Stripe customer is (from checkout.session.completed).
CREATE TABLE billing.stripe_customers (
	customer_id text PRIMARY KEY CHECK (customer_id <> ''),
	user_id text NOT NULL CHECK (user_id <> ''),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.stripe_customers IS 'Stripe customer id -> billing user id, learnt from Checkout';
CREATE INDEX stripe_customers_user ON billing.stripe_customers (user_id);
CREATE INDEX subscriptions_stripe_customer
	ON billing.subscriptions (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;
CREATE INDEX payments_stripe_charge ON billing.payments (stripe_charge_id) WHERE stripe_charge_id IS NOT NULL;

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.stripe_events
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.stripe_objects
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.stripe_customers
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();

CREATE FUNCTION billing.stripe_verify(payload text, signature_header text, secret text,
									  tolerance interval DEFAULT '5 minutes', at timestamptz DEFAULT pg_catalog.now())
RETURNS boolean
AS 'MODULE_PATHNAME', 'billing_stripe_verify' LANGUAGE c IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION billing.stripe_verify(text, text, text, interval, timestamptz) IS
	'Checks a Stripe-Signature header (t=...,v1=...) against a payload and a webhook secret';

CREATE FUNCTION billing.stripe_ingest(payload text, signature_header text, at timestamptz DEFAULT pg_catalog.now())
RETURNS text
AS 'MODULE_PATHNAME', 'billing_stripe_ingest' LANGUAGE c VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION billing.stripe_ingest(text, text, timestamptz) IS
	'Verifies and applies a Stripe webhook event exactly once; returns applied, duplicate, stale or ignored';

-- Internal: Unix seconds in a facts object as timestamptz (NULL when absent).
CREATE FUNCTION billing._stripe_time(facts jsonb, key text) RETURNS timestamptz
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.to_timestamp((facts ->> key)::bigint)
$$;

-- Internal: the billing user a Stripe object belongs to: the user of the
-- subscription it names, metadata.user_id / client_reference_id, or the user
-- the Stripe customer was linked to.
CREATE FUNCTION billing._stripe_user(facts jsonb) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE(
		(SELECT s.user_id FROM billing.subscriptions s
		  WHERE s.stripe_subscription_id = facts ->> 'subscription' AND s.deleted_at IS NULL),
		(SELECT i.user_id FROM billing.invoices i
		  WHERE i.stripe_invoice_id = facts ->> 'invoice' AND i.deleted_at IS NULL),
		NULLIF(facts ->> 'user_id', ''),
		(SELECT c.user_id FROM billing.stripe_customers c
		  WHERE c.customer_id = facts ->> 'customer' AND c.deleted_at IS NULL),
		(SELECT s.user_id FROM billing.subscriptions s
		  WHERE s.stripe_customer_id = facts ->> 'customer' AND s.deleted_at IS NULL
		  ORDER BY s.started_at DESC, s.id DESC LIMIT 1))
$$;

-- Internal: what ingesting checks before an event may touch anything. NULL
-- when the event can be applied, else the reason it is ignored.
CREATE FUNCTION billing._stripe_precheck(event_type text, facts jsonb) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF event_type NOT IN ('checkout.session.completed',
						  'customer.subscription.created', 'customer.subscription.updated',
						  'customer.subscription.deleted', 'customer.subscription.trial_will_end',
						  'invoice.created', 'invoice.finalized', 'invoice.paid', 'invoice.payment_failed',
						  'payment_intent.succeeded', 'payment_intent.payment_failed', 'charge.refunded') THEN
		RETURN 'event type not handled';
	END IF;
	IF facts ->> 'id' IS NULL THEN
		RETURN 'the event''s object has no id';
	END IF;
	IF event_type LIKE 'customer.subscription.%' THEN
		IF facts ->> 'object' IS DISTINCT FROM 'subscription' THEN
			RETURN 'the event''s object is not a subscription';
		END IF;
		IF facts ->> 'price_id' IS NULL THEN
			RETURN 'the stripe subscription has no price';
		END IF;
		IF NOT EXISTS (SELECT 1 FROM billing.subscription_plans p
						WHERE p.stripe_price_id = facts ->> 'price_id' AND p.deleted_at IS NULL) THEN
			RETURN pg_catalog.format('no plan has stripe price "%s"; set billing.subscription_plans.stripe_price_id',
									 facts ->> 'price_id');
		END IF;
		IF facts ->> 'status' IS NULL THEN
			RETURN pg_catalog.format('unknown stripe subscription status "%s"', facts ->> 'stripe_status');
		END IF;
	ELSIF event_type LIKE 'invoice.%' AND facts ->> 'object' IS DISTINCT FROM 'invoice' THEN
		RETURN 'the event''s object is not an invoice';
	ELSIF event_type LIKE 'payment_intent.%' AND facts ->> 'object' IS DISTINCT FROM 'payment_intent' THEN
		RETURN 'the event''s object is not a payment intent';
	ELSIF event_type = 'charge.refunded' AND facts ->> 'object' IS DISTINCT FROM 'charge' THEN
		RETURN 'the event''s object is not a charge';
	END IF;
	IF event_type LIKE 'invoice.%' OR event_type LIKE 'payment_intent.%' OR event_type = 'charge.refunded' THEN
		IF COALESCE(facts ->> 'currency', '') !~ '^[A-Za-z]{3}$' THEN
			RETURN 'the stripe object has no currency';
		END IF;
	END IF;
	RETURN NULL;
END
$$;

-- Internal: remembers that a Stripe customer is a billing user.
CREATE FUNCTION billing._stripe_link_customer(customer_id text, user_id text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO billing.stripe_customers AS c (customer_id, user_id)
	SELECT $1, $2 WHERE $1 IS NOT NULL AND $2 IS NOT NULL
	ON CONFLICT (customer_id) DO UPDATE SET user_id = EXCLUDED.user_id, deleted_at = NULL
		WHERE c.user_id IS DISTINCT FROM EXCLUDED.user_id OR c.deleted_at IS NOT NULL
$$;

-- Internal: checkout.session.completed links the user to the Stripe customer
-- (and to the subscription, when it has already arrived).
CREATE FUNCTION billing._stripe_checkout_completed(facts jsonb) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	uid text := NULLIF(facts ->> 'user_id', '');
BEGIN
	IF uid IS NULL THEN
		RETURN 'the checkout session has no client_reference_id or metadata.user_id';
	END IF;
	PERFORM billing._stripe_link_customer(facts ->> 'customer', uid);
	IF facts ->> 'subscription' IS NOT NULL AND facts ->> 'customer' IS NOT NULL THEN
		UPDATE billing.subscriptions s SET stripe_customer_id = facts ->> 'customer'
		 WHERE s.stripe_subscription_id = facts ->> 'subscription'
		   AND s.stripe_customer_id IS DISTINCT FROM facts ->> 'customer';
	END IF;
	RETURN NULL;
END
$$;

-- Internal: queues a notification (once per dedupe key) in the outbox.
CREATE FUNCTION billing._stripe_notify(user_id text, subscription_id bigint, kind text, details jsonb,
									   due_at timestamptz, dedupe_key text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._notify($1, $2, $3, $6, $5)
$$;

-- Internal: customer.subscription.* mirrors the Stripe subscription into the
-- user's subscription (found by stripe_subscription_id, else created, ending
-- the user's current one as a plan change). A subscription Stripe ended is
-- canceled/expired with ended_at, and the user is back on Free.
CREATE FUNCTION billing._stripe_subscription(event_type text, facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
<<fn>>
DECLARE
	plan billing.subscription_plans;
	s billing.subscriptions;
	cur billing.subscriptions;
	uid text;
	status billing.subscription_status := (facts ->> 'status')::billing.subscription_status;
	pending_cancel boolean := COALESCE((facts ->> 'cancel_at_period_end')::boolean, false);
	started timestamptz := COALESCE(billing._stripe_time(facts, 'start_date'), billing._stripe_time(facts, 'created'),
									event_created);
	period_start timestamptz;
	period_end timestamptz := billing._stripe_time(facts, 'current_period_end');
	trial_start timestamptz := billing._stripe_time(facts, 'trial_start');
	trial_end timestamptz := billing._stripe_time(facts, 'trial_end');
	ended timestamptz;
	canceled timestamptz;
	reason text;
BEGIN
	SELECT p.* INTO plan FROM billing.subscription_plans p
	 WHERE p.stripe_price_id = facts ->> 'price_id' AND p.deleted_at IS NULL;
	IF event_type = 'customer.subscription.deleted' AND status NOT IN ('canceled', 'expired') THEN
		status := 'canceled';
	END IF;
	-- Stripe keeps a subscription that cancels at period end "active"; billing
	-- calls that a pending cancel: canceled, cancel_at_period_end, not ended.
	IF status = 'active' AND pending_cancel THEN
		status := 'canceled';
	END IF;
	IF status IN ('canceled', 'expired') AND NOT (status = 'canceled' AND pending_cancel AND
			facts ->> 'stripe_status' IS DISTINCT FROM 'canceled' AND event_type <> 'customer.subscription.deleted') THEN
		ended := COALESCE(billing._stripe_time(facts, 'ended_at'), billing._stripe_time(facts, 'canceled_at'), event_created);
		reason := CASE status WHEN 'expired' THEN 'incomplete_expired' ELSE 'canceled' END;
	END IF;
	IF status = 'canceled' THEN
		canceled := COALESCE(billing._stripe_time(facts, 'canceled_at'), ended, event_created);
	END IF;

	SELECT x.* INTO s FROM billing.subscriptions x
	 WHERE x.stripe_subscription_id = facts ->> 'id' AND x.deleted_at IS NULL
	   FOR UPDATE;
	IF FOUND THEN
		uid := s.user_id;
		started := s.started_at;
	ELSE
		uid := billing._stripe_user(facts);
		IF uid IS NULL THEN
			RETURN pg_catalog.format('no billing user for stripe subscription "%s": it has no metadata.user_id '
									 'and its customer is not linked', facts ->> 'id');
		END IF;
	END IF;

	period_start := COALESCE(billing._stripe_time(facts, 'current_period_start'), started);
	IF period_end < period_start THEN
		period_end := NULL;
	END IF;
	IF trial_end IS NOT NULL THEN
		trial_start := COALESCE(trial_start, LEAST(started, trial_end));
		IF trial_end < trial_start THEN
			trial_end := trial_start;
		END IF;
	END IF;
	IF ended IS NOT NULL THEN
		ended := GREATEST(ended, started);
	END IF;
	PERFORM billing._stripe_link_customer(facts ->> 'customer', uid);

	IF s.id IS NULL THEN
		-- the user's current subscription: adopted when it is the same paid plan
		-- not yet linked to Stripe, otherwise ended as a plan change
		SELECT x.* INTO cur FROM billing.subscriptions x
		 WHERE x.user_id = uid AND x.ended_at IS NULL AND x.deleted_at IS NULL
		   FOR UPDATE;
		IF cur.id IS NOT NULL AND cur.stripe_subscription_id IS NULL AND cur.plan_id = plan.id AND plan.tier <> 'free' THEN
			s := cur;
		ELSIF ended IS NULL AND cur.id IS NOT NULL THEN
			UPDATE billing.subscriptions x
			   SET status = 'canceled', canceled_at = COALESCE(x.canceled_at, GREATEST(x.started_at, started)),
				   ended_at = GREATEST(x.started_at, started), end_reason = 'plan_changed', cancel_at_period_end = false
			 WHERE x.id = cur.id;
		END IF;
	END IF;

	IF s.id IS NULL THEN
		INSERT INTO billing.subscriptions AS x
			(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, billing_anchor,
			 current_period_start, current_period_end, trial_start, trial_end, cancel_at_period_end, canceled_at,
			 ended_at, end_reason, past_due_since, paused_at, stripe_customer_id, stripe_subscription_id, metadata)
		VALUES (uid, plan.id, status, plan.price_cents, plan.currency, plan.billing_interval, started, period_start,
				period_start, period_end, trial_start, trial_end, pending_cancel, canceled,
				ended, reason, CASE WHEN status = 'past_due' THEN event_created END,
				CASE WHEN status = 'paused' THEN event_created END,
				facts ->> 'customer', facts ->> 'id', '{"source": "stripe"}')
		RETURNING x.* INTO s;
	ELSIF s.ended_at IS NOT NULL THEN
		-- billing already ended it (e.g. a plan change); Stripe cannot bring an
		-- ended subscription back, so only the links are kept up to date
		UPDATE billing.subscriptions x
		   SET stripe_customer_id = COALESCE(facts ->> 'customer', x.stripe_customer_id)
		 WHERE x.id = s.id AND x.stripe_customer_id IS DISTINCT FROM COALESCE(facts ->> 'customer', x.stripe_customer_id);
		RETURN NULL;
	ELSE
		UPDATE billing.subscriptions x
		   SET plan_id = plan.id,
			   price_cents = CASE WHEN x.plan_id = plan.id THEN x.price_cents ELSE plan.price_cents END,
			   currency = CASE WHEN x.plan_id = plan.id THEN x.currency ELSE plan.currency END,
			   billing_interval = plan.billing_interval,
			   status = fn.status,
			   current_period_start = period_start,
			   current_period_end = period_end,
			   trial_start = COALESCE(fn.trial_start, x.trial_start),
			   trial_end = COALESCE(fn.trial_end, x.trial_end),
			   cancel_at_period_end = pending_cancel,
			   canceled_at = canceled,
			   ended_at = ended,
			   end_reason = reason,
			   past_due_since = CASE WHEN fn.status = 'past_due'
									 THEN COALESCE(x.past_due_since, event_created) END,
			   paused_at = CASE WHEN fn.status = 'paused' THEN COALESCE(x.paused_at, event_created) END,
			   scheduled_plan_id = NULL,
			   scheduled_change_at = NULL,
			   stripe_customer_id = COALESCE(facts ->> 'customer', x.stripe_customer_id),
			   stripe_subscription_id = facts ->> 'id',
			   metadata = x.metadata || '{"source": "stripe"}'
		 WHERE x.id = s.id
		RETURNING x.* INTO s;
	END IF;

	IF s.ended_at IS NOT NULL THEN
		PERFORM billing._start_free(uid, s.ended_at);
	END IF;
	IF event_type = 'customer.subscription.trial_will_end' THEN
		PERFORM billing._stripe_notify(uid, s.id, 'trial_will_end',
			pg_catalog.jsonb_build_object('source', 'stripe', 'stripe_subscription_id', facts ->> 'id',
										  'trial_end', s.trial_end, 'plan', plan.code),
			event_created, 'stripe:trial_will_end:' || (facts ->> 'id') || ':' || COALESCE(facts ->> 'trial_end', ''));
	END IF;
	RETURN NULL;
END fn
$$;

-- Internal: a payment from Stripe, stored once per payment intent (its id is
-- the external_id, as billing.record_payment uses it). A succeeded payment is
-- never turned back into a failed one.
CREATE FUNCTION billing._stripe_upsert_payment(user_id text, subscription_id bigint, invoice_id bigint,
											   amount_cents bigint, currency text, succeeded boolean,
											   payment_intent text, charge text, failure_code text,
											   failure_message text, paid_at timestamptz) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	payment_id bigint;
BEGIN
	INSERT INTO billing.payments AS p
		(user_id, subscription_id, invoice_id, amount_cents, currency, status, external_id,
		 stripe_payment_intent_id, stripe_charge_id, failure_code, failure_message, paid_at)
	VALUES ($1, $2, $3, GREATEST($4, 0), pg_catalog.lower($5), CASE WHEN $6 THEN 'succeeded' ELSE 'failed' END,
			COALESCE($7, $8), $7, $8, CASE WHEN NOT $6 THEN COALESCE($9, 'payment_failed') END,
			CASE WHEN NOT $6 THEN $10 END, $11)
	ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO UPDATE
	   SET subscription_id = COALESCE(p.subscription_id, EXCLUDED.subscription_id),
		   invoice_id = COALESCE(p.invoice_id, EXCLUDED.invoice_id),
		   stripe_payment_intent_id = COALESCE(p.stripe_payment_intent_id, EXCLUDED.stripe_payment_intent_id),
		   stripe_charge_id = COALESCE(EXCLUDED.stripe_charge_id, p.stripe_charge_id),
		   amount_cents = CASE WHEN p.status = 'succeeded' THEN p.amount_cents ELSE EXCLUDED.amount_cents END,
		   status = CASE WHEN p.status = 'succeeded' THEN 'succeeded' ELSE EXCLUDED.status END,
		   failure_code = CASE WHEN p.status = 'succeeded' THEN NULL ELSE EXCLUDED.failure_code END,
		   failure_message = CASE WHEN p.status = 'succeeded' THEN NULL ELSE EXCLUDED.failure_message END,
		   paid_at = CASE WHEN p.status = 'succeeded' THEN p.paid_at ELSE EXCLUDED.paid_at END
	RETURNING p.id INTO payment_id;
	RETURN payment_id;
END
$$;

-- Internal: invoice.* upserts the invoice by stripe_invoice_id.
CREATE FUNCTION billing._stripe_invoice(event_type text, facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
<<fn>>
DECLARE
	sub billing.subscriptions;
	inv billing.invoices;
	uid text;
	status text := facts ->> 'status';
	reason text := COALESCE(facts ->> 'billing_reason', 'manual');
	period_start timestamptz := COALESCE(billing._stripe_time(facts -> 'lines' -> 0, 'period_start'),
										 billing._stripe_time(facts, 'period_start'));
	period_end timestamptz := COALESCE(billing._stripe_time(facts -> 'lines' -> 0, 'period_end'),
									   billing._stripe_time(facts, 'period_end'));
	issued timestamptz := COALESCE(billing._stripe_time(facts, 'created'), event_created);
	paid timestamptz;
	invoice_number text;
	lines jsonb;
BEGIN
	SELECT x.* INTO sub FROM billing.subscriptions x
	 WHERE x.stripe_subscription_id = facts ->> 'subscription' AND x.deleted_at IS NULL;
	uid := COALESCE(sub.user_id, billing._stripe_user(facts));
	IF uid IS NULL THEN
		RETURN pg_catalog.format('no billing user for stripe invoice "%s": neither its subscription nor its customer is known',
								 facts ->> 'id');
	END IF;
	status := COALESCE(status, CASE event_type WHEN 'invoice.created' THEN 'draft'
											   WHEN 'invoice.paid' THEN 'paid' ELSE 'open' END);
	IF event_type = 'invoice.paid' THEN
		status := 'paid';
	END IF;
	IF status = 'paid' THEN
		paid := COALESCE(billing._stripe_time(facts, 'paid_at'), event_created);
	END IF;
	IF period_end < period_start THEN
		period_end := NULL;
	END IF;
	SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
			'description', l ->> 'description',
			'amount_cents', (l ->> 'amount_cents')::bigint,
			'currency', pg_catalog.lower(l ->> 'currency'),
			'period_start', billing._stripe_time(l, 'period_start'),
			'period_end', billing._stripe_time(l, 'period_end'),
			'stripe_price_id', l ->> 'stripe_price_id') ORDER BY n), '[]')
	  INTO lines
	  FROM pg_catalog.jsonb_array_elements(COALESCE(facts -> 'lines', '[]')) WITH ORDINALITY AS e(l, n);

	SELECT x.* INTO inv FROM billing.invoices x WHERE x.stripe_invoice_id = facts ->> 'id' FOR UPDATE;
	IF NOT FOUND AND sub.id IS NOT NULL AND reason IN ('subscription_create', 'subscription_cycle') THEN
		-- billing's own invoice for this period becomes Stripe's; another Stripe
		-- invoice for the same period is kept as a manual one
		SELECT x.* INTO inv FROM billing.invoices x
		 WHERE x.subscription_id = sub.id AND x.period_start = fn.period_start
		   AND x.billing_reason IN ('subscription_create', 'subscription_cycle') AND x.deleted_at IS NULL
		   FOR UPDATE;
		IF FOUND AND inv.stripe_invoice_id IS NOT NULL THEN
			inv := NULL;
			reason := 'manual';
		END IF;
	END IF;

	IF inv.id IS NULL THEN
		invoice_number := facts ->> 'number';
		IF invoice_number IS NULL OR EXISTS (SELECT 1 FROM billing.invoices x WHERE x.number = invoice_number) THEN
			IF pg_catalog.to_regprocedure('billing._next_invoice_number(timestamptz)') IS NOT NULL THEN
				EXECUTE 'SELECT billing._next_invoice_number($1)' INTO invoice_number USING issued;
			ELSIF pg_catalog.to_regprocedure('billing._next_invoice_number()') IS NOT NULL THEN
				EXECUTE 'SELECT billing._next_invoice_number()' INTO invoice_number;
			ELSE
				invoice_number := 'STRIPE-' || (facts ->> 'id');
			END IF;
		END IF;
		INSERT INTO billing.invoices AS x
			(number, user_id, subscription_id, status, billing_reason, currency, period_start, period_end,
			 subtotal_cents, total_cents, amount_paid_cents, amount_due_cents, lines, issued_at, paid_at,
			 stripe_invoice_id)
		VALUES (invoice_number, uid, sub.id, status, reason, pg_catalog.lower(facts ->> 'currency'),
				period_start, period_end,
				COALESCE((facts ->> 'subtotal')::bigint, 0), COALESCE((facts ->> 'total')::bigint, 0),
				GREATEST(COALESCE((facts ->> 'amount_paid')::bigint, 0), 0),
				GREATEST(COALESCE((facts ->> 'amount_due')::bigint, 0), 0),
				lines, issued, paid, facts ->> 'id')
		RETURNING x.* INTO inv;
	ELSE
		UPDATE billing.invoices x
		   SET subscription_id = COALESCE(x.subscription_id, sub.id),
			   status = fn.status,
			   currency = pg_catalog.lower(facts ->> 'currency'),
			   period_start = COALESCE(fn.period_start, x.period_start),
			   period_end = COALESCE(fn.period_end, x.period_end),
			   subtotal_cents = COALESCE((facts ->> 'subtotal')::bigint, x.subtotal_cents),
			   total_cents = COALESCE((facts ->> 'total')::bigint, x.total_cents),
			   amount_paid_cents = GREATEST(COALESCE((facts ->> 'amount_paid')::bigint, x.amount_paid_cents), 0),
			   amount_due_cents = GREATEST(COALESCE((facts ->> 'amount_due')::bigint, x.amount_due_cents), 0),
			   lines = CASE WHEN pg_catalog.jsonb_array_length(fn.lines) > 0
							THEN fn.lines ELSE x.lines END,
			   paid_at = CASE WHEN fn.status = 'paid' THEN COALESCE(x.paid_at, paid) END,
			   stripe_invoice_id = facts ->> 'id'
		 WHERE x.id = inv.id
		RETURNING x.* INTO inv;
	END IF;

	-- older API versions name the payment intent on the invoice: the payment is
	-- recorded here, under the same external id payment_intent.succeeded uses
	IF event_type = 'invoice.paid' AND facts ->> 'payment_intent' IS NOT NULL
	   AND COALESCE((facts ->> 'amount_paid')::bigint, 0) > 0 THEN
		PERFORM billing._stripe_upsert_payment(uid, sub.id, inv.id, (facts ->> 'amount_paid')::bigint,
											   facts ->> 'currency', true, facts ->> 'payment_intent',
											   facts ->> 'charge', NULL, NULL, paid);
	END IF;
	RETURN NULL;
END fn
$$;

-- Internal: payment_intent.succeeded / payment_failed store the payment.
CREATE FUNCTION billing._stripe_payment_intent(event_type text, facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	inv billing.invoices;
	uid text;
	sub_id bigint;
	succeeded boolean := event_type = 'payment_intent.succeeded';
BEGIN
	SELECT x.* INTO inv FROM billing.invoices x WHERE x.stripe_invoice_id = facts ->> 'invoice';
	uid := COALESCE(inv.user_id, billing._stripe_user(facts));
	IF uid IS NULL THEN
		RETURN pg_catalog.format('no billing user for stripe payment intent "%s": it has no metadata.user_id '
								 'and its customer is not linked', facts ->> 'id');
	END IF;
	sub_id := COALESCE(inv.subscription_id,
		(SELECT s.id FROM billing.subscriptions s
		  WHERE s.user_id = uid AND s.stripe_customer_id = facts ->> 'customer' AND s.deleted_at IS NULL
		  ORDER BY s.ended_at IS NULL DESC, s.started_at DESC, s.id DESC LIMIT 1));
	PERFORM billing._stripe_upsert_payment(
		uid, sub_id, inv.id,
		CASE WHEN succeeded THEN COALESCE(NULLIF((facts ->> 'amount_received')::bigint, 0), (facts ->> 'amount')::bigint, 0)
			 ELSE COALESCE((facts ->> 'amount')::bigint, 0) END,
		facts ->> 'currency', succeeded, facts ->> 'id', facts ->> 'charge',
		facts ->> 'failure_code', facts ->> 'failure_message', event_created);
	RETURN NULL;
END
$$;

-- Internal: charge.refunded carries the cumulative amount refunded; only the
-- part not yet recorded becomes a new refund (a negative payment).
CREATE FUNCTION billing._stripe_charge_refunded(facts jsonb, event_created timestamptz) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	original billing.payments;
	uid text;
	refunded bigint;
	target bigint;
	delta bigint;
	payment_id bigint;
BEGIN
	SELECT p.* INTO original FROM billing.payments p
	 WHERE p.refund_of IS NULL AND p.deleted_at IS NULL AND p.status = 'succeeded'
	   AND (p.stripe_charge_id = facts ->> 'id' OR p.external_id = facts ->> 'payment_intent'
			OR p.stripe_payment_intent_id = facts ->> 'payment_intent')
	 ORDER BY (p.stripe_charge_id = facts ->> 'id') DESC NULLS LAST, p.id
	 LIMIT 1
	   FOR UPDATE;
	IF NOT FOUND THEN
		-- the payment itself never arrived: it is recorded from the charge
		uid := billing._stripe_user(facts);
		IF uid IS NULL THEN
			RETURN pg_catalog.format('no billing user for stripe charge "%s": it has no metadata.user_id '
									 'and its customer is not linked', facts ->> 'id');
		END IF;
		payment_id := billing._stripe_upsert_payment(
			uid, (SELECT s.id FROM billing.subscriptions s
				   WHERE s.user_id = uid AND s.stripe_customer_id = facts ->> 'customer' AND s.deleted_at IS NULL
				   ORDER BY s.ended_at IS NULL DESC, s.started_at DESC, s.id DESC LIMIT 1),
			(SELECT i.id FROM billing.invoices i WHERE i.stripe_invoice_id = facts ->> 'invoice'),
			COALESCE((facts ->> 'amount')::bigint, 0), facts ->> 'currency', true,
			facts ->> 'payment_intent', facts ->> 'id', NULL, NULL,
			COALESCE(billing._stripe_time(facts, 'created'), event_created));
		SELECT p.* INTO original FROM billing.payments p WHERE p.id = payment_id FOR UPDATE;
	ELSIF original.stripe_charge_id IS NULL THEN
		UPDATE billing.payments p SET stripe_charge_id = facts ->> 'id' WHERE p.id = original.id;
	END IF;

	SELECT COALESCE(-pg_catalog.sum(p.amount_cents), 0) INTO refunded
	  FROM billing.payments p
	 WHERE p.refund_of = original.id AND p.status = 'succeeded' AND p.deleted_at IS NULL;
	target := LEAST(COALESCE((facts ->> 'amount_refunded')::bigint, 0), original.amount_cents);
	delta := target - refunded;
	IF delta > 0 THEN
		INSERT INTO billing.payments
			(user_id, subscription_id, invoice_id, amount_cents, currency, status, refund_of, external_id,
			 stripe_payment_intent_id, stripe_charge_id, paid_at)
		VALUES (original.user_id, original.subscription_id, original.invoice_id, -delta, original.currency,
				'succeeded', original.id, 'stripe_refund:' || (facts ->> 'id') || ':' || target,
				facts ->> 'payment_intent', facts ->> 'id', event_created)
		ON CONFLICT (external_id) WHERE external_id IS NOT NULL DO NOTHING;
	END IF;
	RETURN NULL;
END
$$;

-- Internal: records the event once, checks it is not stale, applies it.
-- Called by billing.stripe_ingest after the signature has been verified.
CREATE FUNCTION billing._stripe_apply(event_id text, event_type text, event_created timestamptz, facts jsonb,
									  payload jsonb, received timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
<<fn>>
DECLARE
	object_id text := facts ->> 'id';
	w billing.stripe_objects;
	result text;
	reason text;
BEGIN
	-- exactly once: a concurrent delivery of the same id waits here for the
	-- other transaction, then finds the row and is a duplicate
	INSERT INTO billing.stripe_events (id, type, object_id, created, payload, result, received_at)
	VALUES (event_id, event_type, object_id, event_created, payload, 'ignored', received)
	ON CONFLICT (id) DO NOTHING;
	IF NOT FOUND THEN
		RETURN 'duplicate';
	END IF;

	reason := billing._stripe_precheck(event_type, facts);
	IF reason IS NOT NULL THEN
		result := 'ignored';
	ELSE
		-- one event per Stripe object at a time, newest wins
		INSERT INTO billing.stripe_objects (object_id, object_type) VALUES (object_id, facts ->> 'object')
		ON CONFLICT ON CONSTRAINT stripe_objects_pkey DO NOTHING;
		SELECT o.* INTO w FROM billing.stripe_objects o WHERE o.object_id = fn.object_id FOR UPDATE;
		IF w.last_event_created IS NOT NULL
		   AND (w.last_event_created, w.last_event_id) >= (event_created, event_id) THEN
			result := 'stale';
			reason := pg_catalog.format('event "%s" of %s is newer for this object', w.last_event_id,
										w.last_event_created);
		ELSE
			reason := CASE
				WHEN event_type = 'checkout.session.completed' THEN billing._stripe_checkout_completed(facts)
				WHEN event_type LIKE 'customer.subscription.%' THEN
					billing._stripe_subscription(event_type, facts, event_created)
				WHEN event_type LIKE 'invoice.%' THEN billing._stripe_invoice(event_type, facts, event_created)
				WHEN event_type LIKE 'payment_intent.%' THEN
					billing._stripe_payment_intent(event_type, facts, event_created)
				WHEN event_type = 'charge.refunded' THEN billing._stripe_charge_refunded(facts, event_created)
			END;
			IF reason IS NULL THEN
				result := 'applied';
				UPDATE billing.stripe_objects o
				   SET last_event_created = event_created, last_event_id = event_id, object_type = facts ->> 'object'
				 WHERE o.object_id = fn.object_id;
			ELSE
				result := 'ignored';
			END IF;
		END IF;
	END IF;
	UPDATE billing.stripe_events e SET result = fn.result, reason = fn.reason
	 WHERE e.id = event_id;
	RETURN result;
END fn
$$;

-- What the application passes to Stripe Checkout for a user and a plan: the
-- plan's Stripe price, the user as client_reference_id and subscription
-- metadata, and the plan's trial days when the user has not had a trial of
-- that tier yet.
CREATE FUNCTION billing.stripe_checkout_params(user_id text, plan_code text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	plan billing.subscription_plans;
	subscription_data jsonb;
BEGIN
	IF user_id IS NULL OR user_id = '' THEN
		RAISE EXCEPTION 'user id must not be null or empty' USING ERRCODE = '22023';
	END IF;
	IF plan_code IS NULL THEN
		RAISE EXCEPTION 'plan code must not be null' USING ERRCODE = '22023';
	END IF;
	SELECT p.* INTO plan FROM billing.subscription_plans p WHERE p.code = plan_code AND p.deleted_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown plan "%"', plan_code
			USING ERRCODE = '22023', HINT = 'The plans are listed in billing.pricing.';
	END IF;
	IF NOT plan.active THEN
		RAISE EXCEPTION 'plan "%" is not active', plan_code
			USING ERRCODE = '22023', HINT = 'The plans are listed in billing.pricing.';
	END IF;
	IF plan.stripe_price_id IS NULL THEN
		RAISE EXCEPTION 'plan "%" has no stripe price', plan_code
			USING ERRCODE = '22023',
				  DETAIL = 'billing.subscription_plans.stripe_price_id is not set for this plan.',
				  HINT = pg_catalog.format('Set it with UPDATE billing.subscription_plans SET stripe_price_id = ''price_...'' WHERE code = %L.', plan_code);
	END IF;
	subscription_data := pg_catalog.jsonb_build_object('metadata', pg_catalog.jsonb_build_object('user_id', user_id));
	IF plan.trial_days > 0 AND NOT EXISTS (
			SELECT 1 FROM billing.subscriptions s JOIN billing.subscription_plans q ON q.id = s.plan_id
			 WHERE s.user_id = stripe_checkout_params.user_id AND q.tier = plan.tier
			   AND s.trial_start IS NOT NULL AND s.deleted_at IS NULL) THEN
		subscription_data := subscription_data || pg_catalog.jsonb_build_object('trial_period_days', plan.trial_days);
	END IF;
	RETURN pg_catalog.jsonb_build_object(
		'mode', 'subscription',
		'line_items', pg_catalog.jsonb_build_array(
			pg_catalog.jsonb_build_object('price', plan.stripe_price_id, 'quantity', 1)),
		'client_reference_id', user_id,
		'subscription_data', subscription_data);
END
$$;
COMMENT ON FUNCTION billing.stripe_checkout_params(text, text) IS
	'The JSON to pass to Stripe Checkout for a user and a plan (price, client_reference_id, metadata, trial days)';
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
								  'rollup_usage']) THEN
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
