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

-- How far maintenance has run: a row for each run_maintenance call at an
-- `at` later than any before, inserted when the call starts (each batch of a
-- run in batches too). A refund dated back that reopens an invoice counts the
-- three days to its due date from the later of its own `at` and the latest
-- ran_to (billing::CreditLineTakenBack), so dunning never starts, nor ends a
-- subscription, at a date maintenance had already written (money review R4).
-- The insert's ROW EXCLUSIVE lock, held until the run commits, orders the
-- run with such a refund, which takes SHARE before it reads ran_to (attack
-- finding 3.3); two runs at once never wait on each other here. Only the
-- latest point is read: a run that records one deletes those before it
-- (rows it can lock without waiting), so the table stays at a row or so.
CREATE TABLE billing.maintenance_runs (
	id bigserial PRIMARY KEY,
	ran_to timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.maintenance_runs IS 'How far maintenance has run (the latest run_maintenance at, recorded when the run starts)';
CREATE INDEX maintenance_runs_ran_to ON billing.maintenance_runs (ran_to);
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.maintenance_runs
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();

-- Exact conversions between timestamptz and the core's microseconds since 1970.
-- RETURN bodies without a SET clause, bound when created: the planner inlines
-- them into the queries that call them once per row.
CREATE FUNCTION billing._micros(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (EXTRACT(epoch FROM t OPERATOR(pg_catalog.-) '1970-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint;

CREATE FUNCTION billing._interval_micros(i interval) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (EXTRACT(epoch FROM i) * 1000000)::bigint;

-- Internal: a human-readable, unique invoice number such as INV-202601-000042.
-- A RETURN body without a SET clause, bound when created: inlined per row.
CREATE FUNCTION billing._next_invoice_number(at timestamptz) RETURNS text
LANGUAGE sql VOLATILE
RETURN 'INV-' OPERATOR(pg_catalog.||) pg_catalog.to_char(pg_catalog.timezone('UTC', at), 'YYYYMM')
	OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||)
	pg_catalog.lpad(pg_catalog.nextval('billing.invoice_number_seq')::text, 6, '0');

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
	-- Ids only: any role may LISTEN, so the payload carries no personal data.
	PERFORM pg_catalog.pg_notify('billing_events',
		pg_catalog.jsonb_build_object('id', new_id, 'subscription_id', $2, 'kind', $3)::pg_catalog.text);
	RETURN true;
END
$$;

-- Internal: notifications that time alone makes due (no state change).
CREATE FUNCTION billing._queue_upcoming(at timestamptz) RETURNS TABLE (action text, count bigint)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	-- Keyed by user and trial (its start) or period (its end), not by
	-- subscription row: a plan change during a trial or a same-interval upgrade
	-- keeps the trial or period, so it is announced once.
	SELECT 'notified_trial_will_end', pg_catalog.count(*) FILTER (WHERE billing._notify(
			s.user_id, s.id, 'trial_will_end', 'trial_will_end:' OPERATOR(pg_catalog.||) s.user_id OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) billing._micros(s.trial_start), at))
	  FROM billing.subscriptions s
	 WHERE s.status OPERATOR(pg_catalog.=) 'trialing' AND s.deleted_at IS NULL AND s.ended_at IS NULL
	   AND s.trial_end OPERATOR(pg_catalog.>) at AND s.trial_end OPERATOR(pg_catalog.<=) (at OPERATOR(pg_catalog.+) interval '3 days')
	UNION ALL
	-- none for a period that will not be billed (a switch to Free at its end)
	-- Billing's own subscriptions by their due time (subscriptions_due: an
	-- active subscription's is its period end), Stripe's by their period end
	-- (subscriptions_due_period_end holds only those, issue 13).
	SELECT 'notified_renewal_upcoming', pg_catalog.count(*) FILTER (WHERE billing._notify(
			s.user_id, s.id, 'renewal_upcoming', 'renewal_upcoming:' OPERATOR(pg_catalog.||) s.user_id OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) billing._micros(s.current_period_end), at))
	  FROM (SELECT o.id, o.user_id, o.status, o.current_period_end, o.cancel_at_period_end, o.price_cents, o.scheduled_plan_id
			  FROM billing.subscriptions o
			 WHERE billing._due_at(o.status, o.current_period_end, o.trial_end, o.started_at) OPERATOR(pg_catalog.>) at
			   AND billing._due_at(o.status, o.current_period_end, o.trial_end, o.started_at) OPERATOR(pg_catalog.<=) (at OPERATOR(pg_catalog.+) interval '7 days')
			   AND o.ended_at IS NULL AND o.deleted_at IS NULL AND o.stripe_subscription_id IS NULL
			UNION ALL
			SELECT t.id, t.user_id, t.status, t.current_period_end, t.cancel_at_period_end, t.price_cents, t.scheduled_plan_id
			  FROM billing.subscriptions t
			 WHERE t.current_period_end OPERATOR(pg_catalog.>) at AND t.current_period_end OPERATOR(pg_catalog.<=) (at OPERATOR(pg_catalog.+) interval '7 days')
			   AND t.ended_at IS NULL AND t.deleted_at IS NULL AND t.current_period_end IS NOT NULL
			   AND t.stripe_subscription_id IS NOT NULL) s
	  LEFT JOIN billing.subscription_plans sp ON sp.id OPERATOR(pg_catalog.=) s.scheduled_plan_id
	 WHERE s.status OPERATOR(pg_catalog.=) 'active'
	   AND NOT s.cancel_at_period_end AND s.price_cents OPERATOR(pg_catalog.>) 0 AND COALESCE(sp.price_cents, 1) OPERATOR(pg_catalog.>) 0
	   AND s.current_period_end OPERATOR(pg_catalog.>) at AND s.current_period_end OPERATOR(pg_catalog.<=) (at OPERATOR(pg_catalog.+) interval '7 days')
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
	run_at pg_catalog.timestamptz := COALESCE(at, pg_catalog.now());
	done bigint;
	deferred bigint;
BEGIN
	-- a NULL batch size would never compare below itself: the loop would not end
	PERFORM billing._required(batch_size, 'batch_size');
	LOOP
		SELECT COALESCE(pg_catalog.sum(m.count) FILTER (WHERE m.action OPERATOR(pg_catalog.=) 'subscriptions_processed'), 0),
			   COALESCE(pg_catalog.sum(m.count) FILTER (WHERE m.action OPERATOR(pg_catalog.=) 'deferred_user_busy'), 0)
		  INTO done, deferred FROM billing.run_maintenance(run_at, batch_size) m;
		COMMIT;
		-- a full batch may leave more; one of only busy users (deferred to the
		-- next run) ends the loop rather than reading them again
		EXIT WHEN done OPERATOR(pg_catalog.+) deferred OPERATOR(pg_catalog.<) batch_size OR done OPERATOR(pg_catalog.=) 0;
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
