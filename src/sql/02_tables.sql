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
	deleted_at timestamptz,
	-- at most one payment's bound (billing::kMaxPaymentCents), so a million
	-- subscriptions' MRR still sums inside a bigint
	CONSTRAINT price_within_payment_bound CHECK (price_cents <= 100000000000),
	CONSTRAINT free_tier_costs_nothing CHECK (tier <> 'free' OR price_cents = 0)
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
	end_reason text CHECK (end_reason IN ('canceled', 'plan_changed', 'trial_ended', 'payment_failed', 'incomplete_expired', 'user_gone')),
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
-- A user's subscriptions in the order the loads pick the one current at a
-- time ("ORDER BY started_at DESC, id DESC LIMIT 1"): id included, the plan
-- reads the first row of the index and sorts nothing (session 11: the first
-- participant's entitlement, callgrind 635k -> 593k instructions).
CREATE INDEX subscriptions_user_history ON billing.subscriptions (user_id, started_at, id);
CREATE UNIQUE INDEX subscriptions_stripe_id
	ON billing.subscriptions (stripe_subscription_id) WHERE stripe_subscription_id IS NOT NULL;
-- What maintenance must visit: current subscriptions by the time something is due.
-- (current_period_end IS NOT NULL, which any bound on it implies: a lookup of
-- a user's current subscription (user_id, ended_at IS NULL, deleted_at IS
-- NULL) must not match this predicate, or a plan made before the table's
-- first ANALYZE, when every index looks one row long, may scan this whole
-- index for it instead of subscriptions_one_current_per_user; issue 12's
-- profile: 408 buffers a lookup at 900 subscriptions.)
-- Stripe's subscriptions only (issue 13): billing's own are found by their due
-- time (subscriptions_due below, the same time for an active subscription),
-- so a renewal, which moves the period end, writes no entry here.
CREATE INDEX subscriptions_due_period_end
	ON billing.subscriptions (current_period_end)
	WHERE ended_at IS NULL AND deleted_at IS NULL AND current_period_end IS NOT NULL
	  AND stripe_subscription_id IS NOT NULL;
CREATE INDEX subscriptions_due_trial_end
	ON billing.subscriptions (trial_end) WHERE status = 'trialing' AND deleted_at IS NULL;
CREATE INDEX subscriptions_plan ON billing.subscriptions (plan_id);

-- Internal: when time alone makes a current subscription due (trial end,
-- incomplete timeout, period end); NULL when nothing is due by time. The grace
-- of a past_due subscription is a setting, served by its own index below.
-- Immutable and inlined (a RETURN body, no SET clause): the index and
-- run_maintenance's keyset query share the expression.
CREATE FUNCTION billing._due_at(status billing.subscription_status, current_period_end timestamptz,
								trial_end timestamptz, started_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE status
	WHEN 'trialing' THEN trial_end
	WHEN 'incomplete' THEN pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', started_at) + interval '23 hours')
	WHEN 'active' THEN current_period_end
	WHEN 'past_due' THEN current_period_end
	WHEN 'canceled' THEN current_period_end
END;
-- run_maintenance reads what is due in (due time, id) order, a page at a time,
-- each page starting after the last: no page rescans what earlier ones did.
CREATE INDEX subscriptions_due ON billing.subscriptions
	(billing._due_at(status, current_period_end, trial_end, started_at), id)
	WHERE ended_at IS NULL AND deleted_at IS NULL AND stripe_subscription_id IS NULL;
CREATE INDEX subscriptions_grace ON billing.subscriptions (past_due_since, id)
	WHERE status = 'past_due' AND ended_at IS NULL AND deleted_at IS NULL AND stripe_subscription_id IS NULL;

-- One row per user whose subscriptions billing has changed. Lifecycle calls
-- lock it to serialise the changes of one user: a row lock lives in the row,
-- not in the shared lock table, so one statement may change any number of
-- users. (The quota cache may serialise per owner on the same row.)
CREATE TABLE billing.user_locks (
	user_id text PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
) WITH (fillfactor = 80);
-- fillfactor 80: every lifecycle call and maintenance writes its user's row
-- (updated_at, not indexed); the room left on each page keeps that update
-- HOT (no primary-key entry, no second heap page). Packed full, as the
-- upgrade's or a bulk load's insert leaves them, the first write of a row
-- moved it to another page: 64% of start_trial's lock writes and 94% of a
-- maintenance page's on a freshly loaded book (bench/scale).
COMMENT ON TABLE billing.user_locks IS 'One row per user, locked to serialise changes to that user''s subscriptions';

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
	stripe_invoice_id text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	-- money: payment is due on issue; credit paid part of it; why it was voided
	due_at timestamptz,
	credit_applied_cents bigint NOT NULL DEFAULT 0 CHECK (credit_applied_cents >= 0),
	void_reason text CHECK (void_reason IN ('canceled', 'plan_changed', 'trial_ended', 'payment_failed', 'incomplete_expired')),
	CONSTRAINT invoice_period_ends_after_start CHECK (period_end IS NULL OR period_end >= period_start),
	CONSTRAINT paid_invoice_has_paid_at CHECK (status <> 'paid' OR paid_at IS NOT NULL)
);
COMMENT ON TABLE billing.invoices IS 'Invoices: renewal, first period and proration; amounts in minor units';
-- Unique where set (issue 13): billing's own invoices, which have none, write
-- no entry (a column UNIQUE constraint indexed every NULL).
CREATE UNIQUE INDEX invoices_stripe_invoice_id_key ON billing.invoices (stripe_invoice_id)
	WHERE stripe_invoice_id IS NOT NULL;
-- Open invoices by due date: what dunning must look at.
CREATE INDEX invoices_open_due ON billing.invoices (due_at) WHERE status = 'open' AND deleted_at IS NULL;
-- A subscription's earliest unpaid due date (read with every subscription the
-- lifecycle loads): one index probe, whatever the number of open invoices.
CREATE INDEX invoices_open_by_subscription ON billing.invoices (subscription_id, due_at)
	WHERE status = 'open' AND deleted_at IS NULL;
CREATE INDEX invoices_user ON billing.invoices (user_id, issued_at);
-- One renewal invoice per subscription and period, whoever issues it; every
-- other invoice is keyed apart by its id. The one index of a subscription's
-- invoices (issue 13: with a second one, invoices_subscription on
-- (subscription_id, issued_at), which no query reads in that order, every
-- renewal invoice wrote an entry into both).
CREATE UNIQUE INDEX invoices_one_per_period
	ON billing.invoices (subscription_id, period_start,
						 (CASE WHEN billing_reason IN ('subscription_create', 'subscription_cycle') AND deleted_at IS NULL
							   THEN 0 ELSE id END));

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
-- a refund reads what the user paid net
CREATE INDEX payments_user ON billing.payments (user_id, currency);

-- The ledger: every movement of money between payments, invoices and the
-- customer's credit balance (billing.credit_balance() sums it).
CREATE TABLE billing.ledger_entries (
	id bigserial PRIMARY KEY,
	user_id text NOT NULL CHECK (user_id <> ''),
	currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	-- payment_to_invoice, payment_to_credit: where a payment went;
	-- credit_to_invoice: credit spent on an invoice; proration_credit: a
	-- negative proration total; void_to_credit: what was paid toward a voided
	-- invoice; credit_refunded: credit a refund took back (payment_id: the refund);
	-- refund_from_invoice: payment money a refund took off an invoice still
	-- open; refund_credit_from_invoice: credit it took off one (both owed
	-- again); refund_of_paid_invoice: the rest, what a paid invoice was paid
	-- with (it stays paid; its period's unused time is credited less this);
	-- refund_credit_line_from_invoice: what an open upgrade invoice's credit
	-- for that period's unused time came down by (owed again);
	-- credit_to_deleted_user: the credit balance of a user deleted from the
	-- attached users table, taken off the id (whoever takes the id next starts
	-- at 0) and owed to the deleted customer: a DBA finds it here;
	-- deleted_user_credit_refunded: what a refund of the deleted customer's
	-- payment took back of that (paid back as the refund's cash, owed no
	-- more; payment_id: the refund): what is owed is credit_to_deleted_user
	-- less these, per user and currency; neither is in the id's balance
	kind text NOT NULL CHECK (kind IN ('payment_to_invoice', 'payment_to_credit', 'credit_to_invoice',
									   'proration_credit', 'void_to_credit', 'credit_refunded',
									   'refund_from_invoice', 'refund_credit_from_invoice',
									   'refund_of_paid_invoice', 'refund_credit_line_from_invoice',
									   'credit_to_deleted_user', 'deleted_user_credit_refunded')),
	amount_cents bigint NOT NULL CHECK (amount_cents > 0),
	payment_id bigint REFERENCES billing.payments (id),
	invoice_id bigint REFERENCES billing.invoices (id),
	at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	CONSTRAINT payment_entries_name_a_payment CHECK (kind NOT LIKE 'payment%' OR payment_id IS NOT NULL),
	CONSTRAINT invoice_entries_name_an_invoice CHECK (kind NOT LIKE '%invoice' OR invoice_id IS NOT NULL)
);
COMMENT ON TABLE billing.ledger_entries IS 'Where every payment went (invoices, credit) and every movement of credit';
CREATE INDEX ledger_entries_user ON billing.ledger_entries (user_id, currency);
CREATE INDEX ledger_entries_payment ON billing.ledger_entries (payment_id) WHERE payment_id IS NOT NULL;
CREATE INDEX ledger_entries_invoice ON billing.ledger_entries (invoice_id) WHERE invoice_id IS NOT NULL;
-- The credit balance (billing.credit_balance, and every lifecycle call,
-- maintenance page and quota fill that reads it) sums only these kinds: their
-- own index, so that it does not visit every payment_to_invoice entry of the
-- user (a random heap page each; most entries are that kind). The predicate
-- is the balance query's own clauses (src/glue/lifecycle.cpp).
CREATE INDEX ledger_entries_credit ON billing.ledger_entries (user_id, currency)
	WHERE deleted_at IS NULL
	  AND kind OPERATOR(pg_catalog.=) ANY ('{payment_to_credit,proration_credit,void_to_credit,credit_to_invoice,credit_refunded,credit_to_deleted_user}'::pg_catalog.text[]);
-- Maintenance: a subscription canceled at period end while in dunning ends at its grace end.
CREATE INDEX subscriptions_canceled_grace ON billing.subscriptions (past_due_since, id)
	WHERE status = 'canceled' AND past_due_since IS NOT NULL AND ended_at IS NULL AND deleted_at IS NULL
	  AND stripe_subscription_id IS NULL;

-- Partitioned by UTC month of recorded_at: run_maintenance creates each
-- month's partition ahead of time (billing._usage_partitions), a record for a
-- month without one lands in usage_records_default (an insert never fails),
-- and whole months past the retention setting are dropped. The parent has no
-- index: each partition gets its own (billing._usage_partition), because
-- pg_restore attaches a partition before it creates the partition's indexes,
-- and a parent index would make the attach build them a second time.
CREATE TABLE billing.usage_records (
	-- unique: every id comes from the sequence (each partition has a unique index)
	id bigserial NOT NULL,
	user_id text NOT NULL CHECK (user_id <> ''),
	subscription_id bigint REFERENCES billing.subscriptions (id),
	metric text NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_.]*$'),
	quantity bigint NOT NULL CHECK (quantity >= 0),
	recorded_at timestamptz NOT NULL,
	-- unique per user (billing.usage_keys holds them across partitions)
	idempotency_key text,
	-- 0.2.0's rollup mark, no longer written: what is not rolled up yet is in
	-- billing.usage_pending, so the rollup never updates this (large) table
	rolled_up boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
) PARTITION BY RANGE (recorded_at);
COMMENT ON TABLE billing.usage_records IS 'Metered usage events, rolled up daily into billing.usage_daily';
CREATE TABLE billing.usage_records_default PARTITION OF billing.usage_records DEFAULT;
COMMENT ON TABLE billing.usage_records_default IS 'Usage records of months without a partition of their own';
CREATE UNIQUE INDEX usage_records_default_id ON billing.usage_records_default (id);
CREATE INDEX usage_records_default_user_metric ON billing.usage_records_default (user_id, metric, recorded_at);

-- Idempotency keys of usage records: a unique index on a partitioned table
-- must contain the partition key, so the keys live here, one row per key.
CREATE TABLE billing.usage_keys (
	user_id text NOT NULL,
	idempotency_key text NOT NULL,
	record_id bigint NOT NULL,
	recorded_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	PRIMARY KEY (user_id, idempotency_key)
);
COMMENT ON TABLE billing.usage_keys IS 'The idempotency key of each usage record that has one (unique per user)';
CREATE INDEX usage_keys_record ON billing.usage_keys (record_id);
CREATE INDEX usage_keys_recorded ON billing.usage_keys (recorded_at);

-- Partitioned by UTC month of day, like the records: a rollup writes into the
-- current month's partition, whose primary key holds one month, not the whole
-- history (100,000 new totals on a history of millions touched as many leaf
-- pages of one large key). run_maintenance creates each month's partition
-- ahead of time (billing._usage_partition); a day of a month without one goes
-- to usage_daily_default and moves when its month's partition is made. The
-- parent has no index (pg_restore would build each partition's a second
-- time, and fail on its primary key): each partition has its own primary key
-- (user_id, metric, day) and (day, metric) index, and writers add to the
-- totals through billing._usage_daily_add, which upserts into the partition.
CREATE TABLE billing.usage_daily (
	user_id text NOT NULL,
	metric text NOT NULL,
	day date NOT NULL,
	quantity bigint NOT NULL CHECK (quantity >= 0),
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
) PARTITION BY RANGE (day);
COMMENT ON TABLE billing.usage_daily IS 'Daily per-user, per-metric usage totals (UTC days)';
CREATE TABLE billing.usage_daily_default PARTITION OF billing.usage_daily (PRIMARY KEY (user_id, metric, day)) DEFAULT;
COMMENT ON TABLE billing.usage_daily_default IS 'Daily usage totals of months without a partition of their own';
CREATE INDEX usage_daily_default_day ON billing.usage_daily_default (day, metric);

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
