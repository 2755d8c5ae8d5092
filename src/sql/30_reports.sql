-- Reports for DBAs and finance (SPEC §6). Every function takes explicit times
-- and groups money by currency; amounts are exact (numeric, never float).
-- Time series come back as (time, metric, value) rows for Grafana.

-- Subscription history (SPEC §8 "History"): every change of a subscription's
-- status, plan, price or period is kept as an interval [valid_from, valid_to).
-- Rows are only appended; the one update closes the open interval (valid_to
-- from 'infinity' to the time of the next change). Written by statement-level
-- triggers on billing.subscriptions, so every writer (the C++ lifecycle, the
-- Stripe path, maintenance, a DBA's UPDATE) records it in the same transaction.
CREATE TABLE billing.subscription_history (
	id bigserial PRIMARY KEY,
	-- a subscription deleted outright (not soft-deleted) takes its history along
	subscription_id bigint NOT NULL REFERENCES billing.subscriptions (id) ON DELETE CASCADE,
	-- the subscription's columns as they were (billing.subscriptions holds
	-- their constraints)
	user_id text,
	plan_id bigint,
	status billing.subscription_status,
	-- the status before this change (NULL for the first interval)
	previous_status billing.subscription_status,
	price_cents bigint,
	currency text,
	billing_interval billing.billing_interval,
	current_period_start timestamptz,
	current_period_end timestamptz,
	trial_start timestamptz,
	trial_end timestamptz,
	cancel_at_period_end boolean,
	canceled_at timestamptz,
	ended_at timestamptz,
	paused_at timestamptz,
	end_reason text,
	-- when the subscription was first active or past_due (paid); NULL: never yet
	paid_since timestamptz,
	-- the subscription was soft-deleted at this point
	removed boolean NOT NULL DEFAULT false,
	valid_from timestamptz NOT NULL,
	valid_to timestamptz NOT NULL DEFAULT 'infinity',
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	-- in dunning (past_due, or canceled while past_due): when the grace
	-- period ends, as it stood when this state began; reports treat the
	-- subscription as ended from then even before maintenance writes the end
	grace_end timestamptz,
	CONSTRAINT history_interval CHECK (valid_to >= valid_from)
);
COMMENT ON TABLE billing.subscription_history IS
	'Every state a subscription has been in, as intervals [valid_from, valid_to); reports read it';
-- The trigger finds the open interval through this index.
CREATE INDEX subscription_history_open
	ON billing.subscription_history (subscription_id) WHERE valid_to = 'infinity';
CREATE INDEX subscription_history_subscription ON billing.subscription_history (subscription_id, valid_from);
CREATE INDEX subscription_history_valid ON billing.subscription_history (valid_from, valid_to);
-- The state valid at a time (billing._valid_at: valid_from <= at < valid_to)
-- from the intervals still open at it: every renewal closes an interval, so
-- for a recent time nearly all of the history ended before it, and the
-- (valid_from, valid_to) index above reads all of that (scale audit: mrr
-- read the whole history, 0.55 s with 36 renewals per paying subscription at
-- 200,000 users, 0.2 s through this). The planner takes whichever index
-- bounds the report's time more closely.
CREATE INDEX subscription_history_valid_to ON billing.subscription_history (valid_to, valid_from);
-- billing._plan_used (an edit of a plan's code or tier) asks whether the
-- history names a plan no subscription is on now: one probe (session 11; it
-- read the whole history, 73 ms at 200,000 users).
CREATE INDEX subscription_history_plan ON billing.subscription_history (plan_id);

-- The time a change takes effect: the `at` the writer declared with
-- billing._set_change_at(at) before its UPDATE of billing.subscriptions (the
-- lifecycle functions do; the setting is transaction-local, and NULL clears
-- it when the writer is done), otherwise the latest event time on the row
-- itself (see billing._history_updated). C++ (src/glue/module.cpp): the glue
-- sets it directly, without a statement.
CREATE FUNCTION billing._set_change_at(at timestamptz) RETURNS void
LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_set_change_at';

-- New subscriptions: their first interval starts when they start. Changed
-- subscriptions: the open interval closes and the new state opens one, from
-- the change time (never before the interval it follows): the time declared
-- for the row (maintenance's renewals, see glue/settings.hpp) or by
-- billing._set_change_at, else the latest event time on the row. C++
-- (src/glue/history.cpp): the transition tables read there, one prepared
-- statement per 1,000 changed rows.
CREATE FUNCTION billing._history_inserted() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'billing_history_inserted';
CREATE FUNCTION billing._history_updated() RETURNS trigger
LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'billing_history_updated';

-- Internal: the history of subscriptions that have none, from what a
-- subscription row keeps (used by the upgrade from 0.2.0, and for rows loaded
-- with the triggers off, e.g. session_replication_role = replica). A trial
-- that was paid becomes two intervals (trialing until the first paid period,
-- then the current state); otherwise the current state holds from the start.
-- Paid: active or past_due now, or a succeeded payment on record.
CREATE FUNCTION billing._history_backfill() RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	added bigint;
BEGIN
	CREATE TEMP TABLE history_missing ON COMMIT DROP AS
	SELECT s.* FROM billing.subscriptions s
	 WHERE NOT EXISTS (SELECT 1 FROM billing.subscription_history h WHERE h.subscription_id OPERATOR(pg_catalog.=) s.id);
	INSERT INTO billing.subscription_history
		(subscription_id, user_id, plan_id, status, previous_status, price_cents, currency, billing_interval,
		 current_period_start, current_period_end, trial_start, trial_end, cancel_at_period_end, canceled_at, ended_at,
		 paused_at, end_reason, paid_since, removed, valid_from, valid_to)
	SELECT s.id, s.user_id, s.plan_id, 'trialing', NULL, s.price_cents, s.currency, s.billing_interval,
		   s.trial_start, s.trial_end, s.trial_start, s.trial_end, false, NULL, NULL, NULL, NULL, NULL,
		   s.deleted_at IS NOT NULL, s.started_at, s.billing_anchor
	  FROM history_missing s
	 WHERE s.trial_start IS NOT NULL AND s.billing_anchor OPERATOR(pg_catalog.>) s.trial_start AND s.billing_anchor OPERATOR(pg_catalog.>=) s.started_at
	   AND s.status NOT IN ('trialing', 'incomplete')
	 ORDER BY s.id;
	INSERT INTO billing.subscription_history
		(subscription_id, user_id, plan_id, status, previous_status, price_cents, currency, billing_interval,
		 current_period_start, current_period_end, trial_start, trial_end, cancel_at_period_end, canceled_at, ended_at,
		 paused_at, end_reason, paid_since, removed, valid_from, grace_end)
	SELECT s.id, s.user_id, s.plan_id, s.status, t.status, s.price_cents, s.currency, s.billing_interval,
		   s.current_period_start, s.current_period_end, s.trial_start, s.trial_end, s.cancel_at_period_end,
		   s.canceled_at, s.ended_at, s.paused_at, s.end_reason,
		   CASE WHEN t.subscription_id IS NOT NULL THEN s.billing_anchor
				WHEN s.status IN ('active', 'past_due') THEN COALESCE(s.billing_anchor, s.started_at)
				ELSE (SELECT pg_catalog.min(p.paid_at) FROM billing.payments p
					   WHERE p.subscription_id OPERATOR(pg_catalog.=) s.id AND p.status OPERATOR(pg_catalog.=) 'succeeded' AND p.amount_cents OPERATOR(pg_catalog.>) 0) END,
		   s.deleted_at IS NOT NULL, COALESCE(t.valid_to, s.started_at),
		   s.past_due_since OPERATOR(pg_catalog.+) billing._setting('past_due_grace', '14 days')::pg_catalog.interval
	  FROM history_missing s
	  LEFT JOIN billing.subscription_history t ON t.subscription_id OPERATOR(pg_catalog.=) s.id
	 ORDER BY s.id;
	GET DIAGNOSTICS added = ROW_COUNT;
	DROP TABLE history_missing;
	RETURN added;
END
$$;

CREATE TRIGGER history_inserted AFTER INSERT ON billing.subscriptions
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._history_inserted();
CREATE TRIGGER history_updated AFTER UPDATE ON billing.subscriptions
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._history_updated();

-- Internal predicates on one history row, for the set-based reports: plain
-- IMMUTABLE SQL without SET clauses and with every name qualified, so the
-- planner inlines them into the report's query (sql/31_report_history.sql
-- checks with EXPLAIN VERBOSE that no call is left): no function runs per
-- row, and each report evaluates only the predicates its figure needs, in the
-- NULL-safe form the planner can estimate (no COALESCE around a comparison).
--   _valid_at:     the row is the subscription's state at `at` (its interval
--                  holds `at`) and the subscription was not removed then
--   _current_at:   not over at `at`: not ended, and not a trial, a pending
--                  cancel or a dunning grace whose end has passed
--                  (maintenance may run later)
--   _pays_at:      of a current row, a paying customer's: a paid price (a
--                  lifetime one too: it adds 0 to MRR by _monthly_cents but is
--                  a paying customer, so moving to it is not churn), active,
--                  past_due or canceled (before its period end, by
--                  _current_at), out of trial, and paid at least once
--                  (never-paid subscriptions count 0)
--   _monthly_cents: what the price adds to MRR (yearly counts 1/12, lifetime 0)
--   _starts_trial: the row is a trial as the history records it: the first
--                  interval of a subscription that started trialing (a
--                  reactivated trial, or a plan change during the trial, is
--                  not a new trial)
--   _converts_trial: the row is a trial's conversion, the one definition
--                  trial_conversion and daily_report count (review R3): the
--                  first paid interval (active or past_due from an unpaid
--                  state) of a subscription that carries a trial (trial_start
--                  set: its own, or one a plan change during the trial
--                  opened, which keeps the trial's trial_start)
-- (the enum compared as itself: a cast to text calls the STABLE enum_out, and
-- an IMMUTABLE function calling it is not inlined)
CREATE FUNCTION billing._valid_at(valid_from timestamptz, valid_to timestamptz, removed boolean, at timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT $1 OPERATOR(pg_catalog.<=) $4 AND $2 OPERATOR(pg_catalog.>) $4 AND NOT $3
$$;

CREATE FUNCTION billing._current_at(status billing.subscription_status, ended_at timestamptz, trial_end timestamptz,
									period_end timestamptz, grace_end timestamptz, at timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT ($2 IS NULL OR $2 OPERATOR(pg_catalog.>) $6)
	   AND ($1 OPERATOR(pg_catalog.<>) 'trialing'::billing.subscription_status OR $3 IS NULL OR $3 OPERATOR(pg_catalog.>) $6)
	   AND ($1 OPERATOR(pg_catalog.<>) 'canceled'::billing.subscription_status OR $4 IS NULL OR $4 OPERATOR(pg_catalog.>) $6)
	   AND ($5 IS NULL OR $5 OPERATOR(pg_catalog.>) $6)
$$;

CREATE FUNCTION billing._pays_at(status billing.subscription_status, price_cents bigint, billing_interval billing.billing_interval,
								 paid_since timestamptz, trial_end timestamptz, at timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT $2 OPERATOR(pg_catalog.>) 0 AND $4 IS NOT NULL
	   AND $1 OPERATOR(pg_catalog.=) ANY ('{active,past_due,canceled}'::billing.subscription_status[])
	   AND ($5 IS NULL OR $5 OPERATOR(pg_catalog.<=) $6)
$$;

CREATE FUNCTION billing._monthly_cents(billing_interval billing.billing_interval, price_cents bigint)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT CASE WHEN $1 OPERATOR(pg_catalog.=) 'monthly'::billing.billing_interval THEN $2::pg_catalog.numeric
				WHEN $1 OPERATOR(pg_catalog.=) 'yearly'::billing.billing_interval THEN $2::pg_catalog.numeric OPERATOR(pg_catalog./) 12
				ELSE 0::pg_catalog.numeric END
$$;

CREATE FUNCTION billing._starts_trial(status billing.subscription_status, previous_status billing.subscription_status,
									  valid_from timestamptz, trial_start timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT $1 OPERATOR(pg_catalog.=) 'trialing'::billing.subscription_status AND $2 IS NULL AND $3 OPERATOR(pg_catalog.=) $4
$$;

CREATE FUNCTION billing._converts_trial(status billing.subscription_status, previous_status billing.subscription_status,
										valid_from timestamptz, paid_since timestamptz, trial_start timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	SELECT $5 IS NOT NULL AND $3 OPERATOR(pg_catalog.=) $4
	   AND $1 OPERATOR(pg_catalog.=) ANY ('{active,past_due}'::billing.subscription_status[])
	   AND $2 OPERATOR(pg_catalog.<>) ALL ('{active,past_due}'::billing.subscription_status[])
$$;

-- Internal: the book as it was at `at`, one row per subscription that had
-- started, read from the history (the state valid at `at`, not today's).
-- Plain SQL without SET clauses so that the planner inlines it into the
-- report that calls it (those pin search_path), and the predicates above into
-- it; a report reads only the columns it needs, so only their predicates run.
--   current:  billing._current_at
--   entitled: current, and the plan applies by billing._grants_plan (the one
--             SQL mirror of the core's rule, given the grace end the history
--             recorded)
--   paying:   current, and billing._pays_at
CREATE FUNCTION billing._book_at(at timestamptz)
RETURNS TABLE (subscription_id bigint, user_id text, plan_id bigint, status billing.subscription_status,
			   currency text, current boolean, entitled boolean, paying boolean, monthly_cents numeric)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT h.subscription_id, h.user_id, h.plan_id, h.status, h.currency,
		   billing._current_at(h.status, h.ended_at, h.trial_end, h.current_period_end, h.grace_end, $1),
		   billing._current_at(h.status, h.ended_at, h.trial_end, h.current_period_end, h.grace_end, $1)
			 AND billing._grants_plan(h.status, h.trial_end, h.current_period_end, h.grace_end, $1),
		   billing._pays_at(h.status, h.price_cents, h.billing_interval, h.paid_since, h.trial_end, $1)
			 AND billing._current_at(h.status, h.ended_at, h.trial_end, h.current_period_end, h.grace_end, $1),
		   billing._monthly_cents(h.billing_interval, h.price_cents)
	  FROM billing.subscription_history h
	 WHERE billing._valid_at(h.valid_from, h.valid_to, h.removed, $1)
$$;

CREATE FUNCTION billing.mrr(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (currency text, mrr_cents bigint, subscriptions bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._valid_time(at, 'at');
	-- EXECUTE ... USING plans the query for this very time. A function's static
	-- query is planned for any time: it then expects a few thousand rows where
	-- a past date matches most of the history, and reads it through an index
	-- (twice as slow as the plain parallel scan at a million subscriptions).
	RETURN QUERY EXECUTE $q$
	SELECT b.currency, pg_catalog.round(pg_catalog.sum(b.monthly_cents))::bigint, pg_catalog.count(*)
	  FROM billing._book_at($1) b
	 WHERE b.paying
	 GROUP BY b.currency
	 ORDER BY b.currency
	$q$ USING at;
END
$$;
COMMENT ON FUNCTION billing.mrr(timestamptz) IS
	'Monthly recurring revenue by currency as it was at the given time (Stripe''s definition: yearly counts 1/12, trials, free and never-paid count 0)';

CREATE FUNCTION billing.arr(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (currency text, arr_cents bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._valid_time(at, 'at');
	-- EXECUTE: planned for these arguments (see billing.mrr)
	RETURN QUERY EXECUTE $q$
	-- 12 x mrr exactly (SPEC §6, review R5): MRR rounded to the minor unit
	-- first (half away from zero, as billing.mrr), then times 12
	SELECT b.currency, 12 OPERATOR(pg_catalog.*) pg_catalog.round(pg_catalog.sum(b.monthly_cents))::bigint
	  FROM billing._book_at($1) b
	 WHERE b.paying
	 GROUP BY b.currency
	 ORDER BY b.currency
	$q$ USING at;
END
$$;
COMMENT ON FUNCTION billing.arr(timestamptz) IS 'Annual recurring revenue: 12 x MRR, by currency';

CREATE FUNCTION billing.active_subscriptions(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (tier billing.plan_tier, status billing.subscription_status, subscriptions bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._valid_time(at, 'at');
	-- EXECUTE: planned for these arguments (see billing.mrr)
	RETURN QUERY EXECUTE $q$
	SELECT p.tier, b.status, pg_catalog.count(*)
	  FROM billing._book_at($1) b JOIN billing.subscription_plans p ON p.id OPERATOR(pg_catalog.=) b.plan_id
	 WHERE b.current
	 GROUP BY p.tier, b.status
	 ORDER BY p.tier, b.status
	$q$ USING at;
END
$$;
COMMENT ON FUNCTION billing.active_subscriptions(timestamptz) IS
	'Subscriptions current at a time, by tier and by the status they had then';

CREATE FUNCTION billing.plan_distribution(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (plan_code text, tier billing.plan_tier, users bigint, share numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._valid_time(at, 'at');
	-- every user with a subscription started by `at` and not ended then
	-- (an ended one is followed by the user's next one, Free at least, but
	-- for a user deleted from, or renamed away in, the users table: attack
	-- finding 3/6); the plan of the one that entitles them (at most one is
	-- current), Free otherwise. The book at `at` (billing._book_at) with
	-- ended_at, which it does not return.
	-- EXECUTE: planned for these arguments (see billing.mrr)
	RETURN QUERY EXECUTE $q$
	WITH users AS (
		SELECT h.user_id, pg_catalog.max(h.plan_id) FILTER (WHERE
				 billing._current_at(h.status, h.ended_at, h.trial_end, h.current_period_end, h.grace_end, $1)
				 AND billing._grants_plan(h.status, h.trial_end, h.current_period_end, h.grace_end, $1)) AS plan_id
		  FROM billing.subscription_history h
		 WHERE billing._valid_at(h.valid_from, h.valid_to, h.removed, $1)
		 GROUP BY h.user_id
		HAVING pg_catalog.bool_or(h.ended_at IS NULL OR h.ended_at OPERATOR(pg_catalog.>) $1)),
	counted AS (
		SELECT COALESCE(u.plan_id, (SELECT f.id FROM billing.subscription_plans f WHERE f.code OPERATOR(pg_catalog.=) 'free')) AS plan_id,
			   pg_catalog.count(*) AS users
		  FROM users u GROUP BY 1)
	SELECT p.code, p.tier, c.users,
		   pg_catalog.round(c.users::numeric OPERATOR(pg_catalog./) NULLIF(pg_catalog.sum(c.users) OVER (), 0), 4)
	  FROM counted c JOIN billing.subscription_plans p ON p.id OPERATOR(pg_catalog.=) c.plan_id
	 ORDER BY c.users DESC, p.code
	$q$ USING at;
END
$$;
COMMENT ON FUNCTION billing.plan_distribution(timestamptz) IS 'Users per effective plan at a time, with their share';

CREATE FUNCTION billing.churn(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (currency text, customers_at_start bigint, customers_churned bigint, customer_churn numeric,
			   mrr_at_start_cents bigint, mrr_churned_cents bigint, revenue_churn numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._valid_time(from_time, 'from_time'), billing._valid_time(to_time, 'to_time');
	IF to_time OPERATOR(pg_catalog.<=) from_time THEN
		RAISE EXCEPTION 'report period must have a start before its end' USING ERRCODE = '22023';
	END IF;
	-- A customer churns when what paid at the start no longer pays at the end
	-- and the user has no paying subscription then (a plan change is not churn).
	-- EXECUTE: planned for these arguments (see billing.mrr). One (parallel)
	-- scan of the history keeps the rows paying at the start or at the end (the
	-- planner factors out the predicates the two share); the rows paying at the
	-- start whose user has none paying at the end are an anti join of the two.
	-- Not a DISTINCT of the users paying at the end: that hash aggregate of
	-- hundreds of thousands of users spilled past work_mem and ran for minutes
	-- (bench/reports, 1,000,000 subscriptions, work_mem 4MB). Not a window
	-- per user either: its sort by user costs more than the hash join
	-- (bench/reports, 200,000 users: 1.1-1.3 of the DBA's query, this 0.8-0.9).
	RETURN QUERY EXECUTE $q$
	WITH book AS MATERIALIZED (
		SELECT b.user_id, b.currency, b.mrr, b.at_start, b.at_end FROM (
			SELECT h.user_id, h.currency, billing._monthly_cents(h.billing_interval, h.price_cents) AS mrr,
				   billing._valid_at(h.valid_from, h.valid_to, h.removed, $1)
					 AND billing._pays_at(h.status, h.price_cents, h.billing_interval, h.paid_since, h.trial_end, $1)
					 AND billing._current_at(h.status, h.ended_at, h.trial_end, h.current_period_end, h.grace_end, $1) AS at_start,
				   billing._valid_at(h.valid_from, h.valid_to, h.removed, $2)
					 AND billing._pays_at(h.status, h.price_cents, h.billing_interval, h.paid_since, h.trial_end, $2)
					 AND billing._current_at(h.status, h.ended_at, h.trial_end, h.current_period_end, h.grace_end, $2) AS at_end
			  FROM billing.subscription_history h) b
		 WHERE b.at_start OR b.at_end),
	start AS (
		SELECT s.user_id, s.currency, s.mrr FROM book s WHERE s.at_start),
	churned AS (
		SELECT s.currency, s.mrr FROM start s
		 WHERE NOT EXISTS (SELECT FROM book e WHERE e.at_end AND e.user_id OPERATOR(pg_catalog.=) s.user_id)),
	totals AS (
		SELECT s.currency, pg_catalog.count(*) AS n, pg_catalog.sum(s.mrr) AS mrr FROM start s GROUP BY s.currency),
	lost AS (
		SELECT s.currency, pg_catalog.count(*) AS n, pg_catalog.sum(s.mrr) AS mrr FROM churned s GROUP BY s.currency)
	SELECT t.currency, t.n, COALESCE(l.n, 0),
		   pg_catalog.round(COALESCE(l.n, 0)::pg_catalog.numeric OPERATOR(pg_catalog./) t.n, 4),
		   pg_catalog.round(t.mrr)::pg_catalog.int8, pg_catalog.round(COALESCE(l.mrr, 0))::pg_catalog.int8,
		   pg_catalog.round(COALESCE(l.mrr, 0) OPERATOR(pg_catalog./) NULLIF(t.mrr, 0), 4)
	  FROM totals t LEFT JOIN lost l ON l.currency OPERATOR(pg_catalog.=) t.currency
	 ORDER BY t.currency
	$q$ USING from_time, to_time;
END
$$;
COMMENT ON FUNCTION billing.churn(timestamptz, timestamptz) IS
	'Customer and revenue churn between two times, by currency';

-- Internal: net money received (payments minus refunds) in [from, to). A
-- soft-deleted payment leaves the reports from its deletion on, as a
-- soft-deleted subscription does (SPEC §8): a period that ended before the
-- deletion still counts it, so a past figure never changes.
CREATE FUNCTION billing._net_payments(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (user_id text, currency text, paid_at timestamptz, amount_cents bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.user_id, p.currency, p.paid_at, p.amount_cents
	  FROM billing.payments p
	 WHERE p.status OPERATOR(pg_catalog.=) 'succeeded' AND (p.deleted_at IS NULL OR p.deleted_at OPERATOR(pg_catalog.>=) to_time)
	   AND p.paid_at OPERATOR(pg_catalog.>=) from_time AND p.paid_at OPERATOR(pg_catalog.<) to_time
$$;

CREATE FUNCTION billing.arpu(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (currency text, revenue_cents bigint, paying_users bigint, arpu_cents bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._valid_period(from_time, to_time);
	SELECT n.currency, pg_catalog.sum(n.amount_cents)::bigint,
		   pg_catalog.count(DISTINCT n.user_id) FILTER (WHERE n.amount_cents OPERATOR(pg_catalog.>) 0),
		   pg_catalog.round(pg_catalog.sum(n.amount_cents)::numeric
				OPERATOR(pg_catalog./) NULLIF(pg_catalog.count(DISTINCT n.user_id) FILTER (WHERE n.amount_cents OPERATOR(pg_catalog.>) 0), 0))::bigint
	  FROM billing._net_payments(from_time, to_time) n
	 GROUP BY n.currency
	 ORDER BY n.currency
$$;
COMMENT ON FUNCTION billing.arpu(timestamptz, timestamptz) IS
	'Average revenue per paying user between two times (net of refunds), by currency';

-- Internal: trials as the history records them (billing._starts_trial)
-- started in [from, to).
CREATE FUNCTION billing._trials_started(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (subscription_id bigint, plan_id bigint, trial_start timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
	SELECT h.subscription_id, h.plan_id, h.trial_start
	  FROM billing.subscription_history h
	 WHERE billing._starts_trial(h.status, h.previous_status, h.valid_from, h.trial_start)
	   AND h.valid_from OPERATOR(pg_catalog.>=) $1 AND h.valid_from OPERATOR(pg_catalog.<) $2 AND NOT h.removed
$$;

CREATE FUNCTION billing.trial_conversion(from_time timestamptz, to_time timestamptz)
RETURNS TABLE (tier billing.plan_tier, trials bigint, converted bigint, still_trialing bigint, conversion numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._valid_period(from_time, to_time);
	-- Trials started in [from, to); converted: a conversion
	-- (billing._converts_trial, the one daily_report counts) before `to` (an
	-- upgrade afterwards does not undo it); still trialing: trialing just
	-- before `to`. A trial lives on in the subscriptions a plan change during
	-- it opens (same user, same trial_start; review R3: a switch then a
	-- payment is converted). The trials (billing._starts_trial, as
	-- billing._trials_started, read with their user) joined with those
	-- subscriptions (subscriptions_user_history) and their history
	-- (subscription_history_subscription): index lookups that a plan made
	-- for any period keeps (a join on the period's history by user and
	-- trial_start was planned as a nested loop of two ranges); no subquery
	-- run per trial; a subscription has one trial, its first interval.
	WITH trials AS (
		SELECT p.tier,
			   pg_catalog.bool_or(billing._converts_trial(c.status, c.previous_status, c.valid_from, c.paid_since, c.trial_start)
								  AND c.valid_from OPERATOR(pg_catalog.<) to_time AND NOT c.removed) AS converted,
			   pg_catalog.bool_or(c.valid_from OPERATOR(pg_catalog.<) to_time AND c.valid_to OPERATOR(pg_catalog.>=) to_time
								  AND c.status OPERATOR(pg_catalog.=) 'trialing' AND c.trial_end OPERATOR(pg_catalog.>=) to_time) AS trialing
		  FROM billing.subscription_history t
		  JOIN billing.subscription_plans p ON p.id OPERATOR(pg_catalog.=) t.plan_id
		  JOIN billing.subscriptions s ON s.user_id OPERATOR(pg_catalog.=) t.user_id
		   AND s.started_at OPERATOR(pg_catalog.>=) t.trial_start AND s.trial_start OPERATOR(pg_catalog.=) t.trial_start
		  JOIN billing.subscription_history c ON c.subscription_id OPERATOR(pg_catalog.=) s.id
		 WHERE billing._starts_trial(t.status, t.previous_status, t.valid_from, t.trial_start)
		   AND t.valid_from OPERATOR(pg_catalog.>=) from_time AND t.valid_from OPERATOR(pg_catalog.<) to_time AND NOT t.removed
		 GROUP BY t.subscription_id, p.tier)
	SELECT t.tier, pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE t.converted),
		   pg_catalog.count(*) FILTER (WHERE t.trialing),
		   pg_catalog.round(pg_catalog.count(*) FILTER (WHERE t.converted)::numeric OPERATOR(pg_catalog./) pg_catalog.count(*), 4)
	  FROM trials t
	 GROUP BY t.tier
	 ORDER BY t.tier
$$;
COMMENT ON FUNCTION billing.trial_conversion(timestamptz, timestamptz) IS
	'Trials started between two times and how many became paid before the end, by tier';

-- Internal: the UTC calendar buckets of a time series, whatever the session's
-- TimeZone; grain is hour, day, week (ISO, from Monday), month or year.
CREATE FUNCTION billing._buckets(from_time timestamptz, to_time timestamptz, grain text)
RETURNS TABLE (bucket timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
	step interval;
BEGIN
	PERFORM billing._required(grain, 'grain');
	IF grain NOT IN ('hour', 'day', 'week', 'month', 'year') THEN
		RAISE EXCEPTION 'unknown grain "%"', grain
			USING ERRCODE = '22023', HINT = 'Use hour, day, week, month or year.';
	END IF;
	PERFORM billing._valid_time(from_time, 'from_time'), billing._valid_time(to_time, 'to_time');
	IF to_time OPERATOR(pg_catalog.<=) from_time THEN
		RAISE EXCEPTION 'report period must have a start before its end' USING ERRCODE = '22023';
	END IF;
	step := ('1 ' OPERATOR(pg_catalog.||) grain)::interval;
	-- a series is for plotting: at most 100,000 points
	IF EXTRACT(epoch FROM to_time OPERATOR(pg_catalog.-) from_time)
	   OPERATOR(pg_catalog.>) (100000 OPERATOR(pg_catalog.*) EXTRACT(epoch FROM CASE grain WHEN 'month' THEN interval '28 days'
															WHEN 'year' THEN interval '365 days' ELSE step END)) THEN
		RAISE EXCEPTION 'report period has too many % buckets', grain USING ERRCODE = '22023',
			DETAIL = 'A time series has at most 100000 buckets.', HINT = 'Use a coarser grain or a shorter period.';
	END IF;
	RETURN QUERY
	SELECT g AT TIME ZONE 'UTC'
	  FROM pg_catalog.generate_series(pg_catalog.date_trunc(grain, from_time AT TIME ZONE 'UTC'),
									  (to_time AT TIME ZONE 'UTC') OPERATOR(pg_catalog.-) interval '1 microsecond', step) g;
END
$$;

CREATE FUNCTION billing.revenue(from_time timestamptz, to_time timestamptz, grain text DEFAULT 'day')
RETURNS TABLE ("time" timestamptz, metric text, value numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	-- One series per currency paid in during the period (review R4: not
	-- SELECT DISTINCT over every payment ever recorded): the period's rows
	-- only, read once through payments_paid_at, zero for its empty buckets.
	-- The buckets are made once (session 10: a first statement made them
	-- only to check the arguments), kept, and counted in a one-time filter
	-- that runs before anything is read: the arguments are checked even when
	-- nothing was paid in the period (the join then reads no bucket).
	WITH b AS MATERIALIZED (SELECT bucket FROM billing._buckets(from_time, to_time, grain)),
	money AS MATERIALIZED (
		SELECT pg_catalog.date_trunc(grain, n.paid_at, 'UTC') AS bucket, n.currency, pg_catalog.sum(n.amount_cents) AS cents
		  FROM billing._net_payments(from_time, to_time) n
		 GROUP BY 1, 2),
	cur AS (SELECT DISTINCT m.currency FROM money m)
	SELECT b.bucket, 'revenue_cents_' OPERATOR(pg_catalog.||) c.currency, COALESCE(m.cents, 0)
	  FROM b CROSS JOIN cur c
	  LEFT JOIN money m ON m.bucket OPERATOR(pg_catalog.=) b.bucket AND m.currency OPERATOR(pg_catalog.=) c.currency
	 WHERE (SELECT pg_catalog.count(*) FROM b) OPERATOR(pg_catalog.>=) 0
	 ORDER BY 1, 2
$$;
COMMENT ON FUNCTION billing.revenue(timestamptz, timestamptz, text) IS
	'Net revenue per UTC time bucket and currency as (time, metric, value) rows';

-- Internal: usage_trends' grain: required, and no hour grain (review R2:
-- usage is kept per UTC day).
CREATE FUNCTION billing._usage_grain(grain text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._required(grain, 'grain');
	IF grain OPERATOR(pg_catalog.=) 'hour' THEN
		RAISE EXCEPTION 'usage_trends has no hour grain: usage is kept per UTC day'
			USING ERRCODE = '22023', HINT = 'Use day, week, month or year.';
	END IF;
END
$$;

CREATE FUNCTION billing.usage_trends(from_time timestamptz, to_time timestamptz, grain text DEFAULT 'day')
RETURNS TABLE ("time" timestamptz, metric text, value numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	-- Usage is kept per UTC day (the rollup keeps daily totals, the quota
	-- triggers count per day), so a series counts whole UTC days: the days
	-- [from's UTC day, to's UTC day), whatever the times of from and to, each
	-- at its UTC midnight, whether rolled up yet or not (billing.usage(), by
	-- contrast, is exact for any bounds: W2). (Review R2: a record
	-- counted at its own time until the rollup moved it to midnight, so an
	-- hourly series, or a period starting within a day, changed at the
	-- rollup). No hour grain: there is no hourly total to keep.
	-- The grain first (no hour: its own error), then the buckets, made once
	-- (session 10: the first statement made them too, only to check the
	-- arguments), kept and counted in a one-time filter that runs before
	-- anything is read, so the arguments are checked even for a period with
	-- no usage (the join then reads no bucket).
	SELECT billing._usage_grain(grain);
	WITH b AS MATERIALIZED (SELECT bucket FROM billing._buckets(from_time, to_time, grain)),
	span AS (SELECT ((from_time AT TIME ZONE 'UTC')::pg_catalog.date::pg_catalog.timestamp AT TIME ZONE 'UTC') AS t0,
					((to_time AT TIME ZONE 'UTC')::pg_catalog.date::pg_catalog.timestamp AT TIME ZONE 'UTC') AS t1),
	daily AS (
		SELECT d.day::timestamp AT TIME ZONE 'UTC' AS t, d.metric, d.quantity FROM billing.usage_daily d
		 WHERE d.deleted_at IS NULL
		   AND d.day OPERATOR(pg_catalog.>=) (from_time AT TIME ZONE 'UTC')::pg_catalog.date AND d.day OPERATOR(pg_catalog.<) (to_time AT TIME ZONE 'UTC')::pg_catalog.date
		UNION ALL
		SELECT pg_catalog.date_trunc('day', p.recorded_at, 'UTC'), p.metric, p.quantity FROM billing.usage_pending p, span
		 WHERE p.recorded_at OPERATOR(pg_catalog.>=) span.t0 AND p.recorded_at OPERATOR(pg_catalog.<) span.t1
		UNION ALL
		SELECT q.usage_day::timestamp AT TIME ZONE 'UTC',
			   CASE a.kind WHEN 'rooms' THEN 'rooms_created' ELSE 'participants_joined' END, q.usage_pending
		  FROM billing.quota_counters q JOIN billing.attachments a ON a.id OPERATOR(pg_catalog.=) q.attachment_id
		 WHERE q.usage_pending OPERATOR(pg_catalog.>) 0 AND q.owner_id OPERATOR(pg_catalog.<>) ''
		   -- the period's days, as above (an index range: not every counter)
		   AND q.usage_day OPERATOR(pg_catalog.>=) (from_time AT TIME ZONE 'UTC')::pg_catalog.date AND q.usage_day OPERATOR(pg_catalog.<) (to_time AT TIME ZONE 'UTC')::pg_catalog.date),
	agg AS (
		SELECT pg_catalog.date_trunc(grain, d.t, 'UTC') AS bucket, d.metric, pg_catalog.sum(d.quantity) AS total
		  FROM daily d GROUP BY 1, 2)
	SELECT a.bucket, a.metric, a.total FROM agg a JOIN b ON b.bucket OPERATOR(pg_catalog.=) a.bucket
	 WHERE (SELECT pg_catalog.count(*) FROM b) OPERATOR(pg_catalog.>=) 0
	 ORDER BY 1, 2
$$;
COMMENT ON FUNCTION billing.usage_trends(timestamptz, timestamptz, text) IS
	'Usage per UTC day, week, month or year and metric as (time, metric, value) rows, over whole UTC days [from''s day, to''s day)';

CREATE FUNCTION billing.daily_report(day date)
RETURNS TABLE (metric text, value bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._valid_time(billing._required(day, 'day')::timestamp AT TIME ZONE 'UTC', 'day');
	-- The UTC day [d0, d1); "active" is the book at the day's last microsecond.
	-- EXECUTE: planned for these arguments (see billing.mrr)
	RETURN QUERY EXECUTE $q$
	WITH bounds AS (SELECT $1::timestamp AT TIME ZONE 'UTC' AS d0, ($1 OPERATOR(pg_catalog.+) 1)::timestamp AT TIME ZONE 'UTC' AS d1),
	report (ord, metric, value) AS (
	SELECT 0, 'active_' OPERATOR(pg_catalog.||) p.tier, pg_catalog.count(*)
	  FROM bounds, billing._book_at(bounds.d1 OPERATOR(pg_catalog.-) interval '1 microsecond') b
	  JOIN billing.subscription_plans p ON p.id OPERATOR(pg_catalog.=) b.plan_id
	 WHERE b.current AND b.status NOT IN ('incomplete', 'paused')
	 GROUP BY p.tier
	UNION ALL
	SELECT 10, 'new_trials', pg_catalog.count(*) FROM bounds, billing._trials_started(bounds.d0, bounds.d1) t
	UNION ALL
	-- a trial's conversion (billing._converts_trial, as trial_conversion counts it)
	SELECT 11, 'conversions', pg_catalog.count(*) FROM bounds, billing.subscription_history h
	 WHERE h.valid_from OPERATOR(pg_catalog.>=) bounds.d0 AND h.valid_from OPERATOR(pg_catalog.<) bounds.d1
	   AND billing._converts_trial(h.status, h.previous_status, h.valid_from, h.paid_since, h.trial_start) AND NOT h.removed
	UNION ALL
	SELECT 12, 'cancellations', pg_catalog.count(*) FROM bounds, billing.subscription_history h
	 WHERE h.valid_from OPERATOR(pg_catalog.>=) bounds.d0 AND h.valid_from OPERATOR(pg_catalog.<) bounds.d1 AND h.status OPERATOR(pg_catalog.=) 'canceled'
	   AND h.previous_status IS NOT NULL AND h.previous_status OPERATOR(pg_catalog.<>) 'canceled'
	   AND COALESCE(h.end_reason, '') NOT IN ('plan_changed', 'user_gone') AND NOT h.removed
	UNION ALL
	-- (a soft-deleted payment counts until its deletion, as in billing._net_payments)
	SELECT 13, 'failed_payments', pg_catalog.count(*) FROM bounds, billing.payments p
	 WHERE p.status OPERATOR(pg_catalog.=) 'failed' AND p.paid_at OPERATOR(pg_catalog.>=) bounds.d0 AND p.paid_at OPERATOR(pg_catalog.<) bounds.d1
	   AND (p.deleted_at IS NULL OR p.deleted_at OPERATOR(pg_catalog.>=) bounds.d1))
	SELECT r.metric, r.value FROM report r ORDER BY r.ord, r.metric
	$q$ USING day;
END
$$;
COMMENT ON FUNCTION billing.daily_report(date) IS
	'One UTC day at a glance: active by tier, new trials, conversions, cancellations, failed payments';
