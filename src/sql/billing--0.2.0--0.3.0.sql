-- billing 0.2.0 -> 0.3.0 (ALTER EXTENSION billing UPDATE).
--
-- Each change to the install script (src/sql/[0-9]*.sql) has its counterpart
-- here, in the section of its area; test/shell/upgrade.sh checks that a
-- database updated from 0.1.0 and from 0.2.0 ends up object for object the same
-- as a fresh install.
\echo Use "ALTER EXTENSION billing UPDATE TO '0.3.0'" to load this file. \quit

SET LOCAL search_path TO pg_catalog, pg_temp;

-- == test gate (issue 8)

-- record_usage: #variable_conflict use_column (every call failed with 42702),
-- NULL arguments 22004, times outside 0001-9999 22008.
CREATE OR REPLACE FUNCTION billing.record_usage(user_id text, metric text, quantity bigint DEFAULT 1,
									 at timestamptz DEFAULT pg_catalog.now(), idempotency_key text DEFAULT NULL)
RETURNS billing.usage_records
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	rec billing.usage_records;
BEGIN
	-- Parameters share the columns' names; in SQL, a bare name is the column.
	IF user_id IS NULL OR metric IS NULL OR quantity IS NULL OR at IS NULL THEN
		RAISE EXCEPTION 'user_id, metric, quantity and at must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF user_id = '' THEN
		RAISE EXCEPTION 'user id must not be empty' USING ERRCODE = '22023';
	END IF;
	IF metric !~ '^[a-z][a-z0-9_.]*$' THEN
		RAISE EXCEPTION 'invalid metric name "%"', metric
			USING ERRCODE = '22023', DETAIL = 'Metric names are lower-case letters, digits, "_" and ".", starting with a letter.';
	END IF;
	IF quantity < 0 THEN
		RAISE EXCEPTION 'usage quantity must not be negative' USING ERRCODE = '22023',
			DETAIL = pg_catalog.format('Quantity given: %s.', quantity);
	END IF;
	IF NOT (at >= '0001-01-01 00:00:00+00' AND at < '10000-01-01 00:00:00+00') THEN
		RAISE EXCEPTION 'argument "at" must lie in the years 0001 to 9999 (UTC)' USING ERRCODE = '22008';
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

-- == security (issue 9)

-- == money and access (issue 10)
-- The ledger: invoices fall due after issue, credit pays them first, voided
-- invoices say why; every movement of money is a ledger entry.
ALTER TABLE billing.invoices
	ADD COLUMN due_at timestamptz,
	ADD COLUMN credit_applied_cents bigint NOT NULL DEFAULT 0 CHECK (credit_applied_cents >= 0),
	ADD COLUMN void_reason text CHECK (void_reason IN ('canceled', 'plan_changed', 'trial_ended', 'payment_failed', 'incomplete_expired'));
UPDATE billing.invoices SET due_at = issued_at + interval '3 days' WHERE due_at IS NULL;
CREATE INDEX invoices_open_due ON billing.invoices (due_at) WHERE status = 'open' AND deleted_at IS NULL;
CREATE TABLE billing.ledger_entries (
	id bigserial PRIMARY KEY,
	user_id text NOT NULL CHECK (user_id <> ''),
	currency text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	-- payment_to_invoice, payment_to_credit: where a payment went;
	-- credit_to_invoice: credit spent on an invoice; proration_credit: a
	-- negative proration total; void_to_credit: what was paid toward a voided invoice
	kind text NOT NULL CHECK (kind IN ('payment_to_invoice', 'payment_to_credit', 'credit_to_invoice',
									   'proration_credit', 'void_to_credit')),
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
-- Maintenance: a subscription canceled at period end while in dunning ends at its grace end.
CREATE INDEX subscriptions_canceled_grace ON billing.subscriptions (past_due_since, id)
	WHERE status = 'canceled' AND past_due_since IS NOT NULL AND ended_at IS NULL AND deleted_at IS NULL
	  AND stripe_subscription_id IS NULL;

CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.ledger_entries
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();
SELECT pg_catalog.pg_extension_config_dump('billing.ledger_entries', '');
SELECT pg_catalog.pg_extension_config_dump('billing.ledger_entries_id_seq', '');
REVOKE ALL ON billing.ledger_entries FROM PUBLIC;
REVOKE ALL ON SEQUENCE billing.ledger_entries_id_seq FROM PUBLIC;
GRANT SELECT ON billing.ledger_entries TO billing_analyst, billing_admin;

CREATE FUNCTION billing.credit_balance(user_id text, currency text DEFAULT 'usd')
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE(pg_catalog.sum(CASE WHEN e.kind = 'credit_to_invoice' THEN -e.amount_cents ELSE e.amount_cents END), 0)::bigint
	  FROM billing.ledger_entries e
	 WHERE e.user_id = $1 AND e.currency = pg_catalog.lower($2) AND e.deleted_at IS NULL
	   AND e.kind IN ('payment_to_credit', 'proration_credit', 'void_to_credit', 'credit_to_invoice')
$$;
COMMENT ON FUNCTION billing.credit_balance(text, text) IS
	'The customer''s credit balance (minor units) in a currency, applied to the next invoice';

REVOKE ALL ON FUNCTION billing.credit_balance(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing.credit_balance(text, text) TO billing_app;

CREATE OR REPLACE FUNCTION billing.effective_plan(user_id text, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscription_plans
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.*
	  FROM (SELECT CASE
				   WHEN s.status = 'trialing' THEN CASE WHEN s.trial_end > $2 THEN s.plan_id END
				   WHEN s.status IN ('active', 'past_due', 'canceled') THEN
					   CASE WHEN (s.status <> 'canceled' OR s.current_period_end > $2)
								 AND (d.dunning_from IS NULL OR d.dunning_from + g.grace > $2)
							THEN CASE WHEN s.status = 'active' AND s.scheduled_change_at <= $2
									  THEN s.scheduled_plan_id ELSE s.plan_id END
					   END
				   END AS plan_id, 0 AS rank
			  FROM billing.subscriptions s
			  LEFT JOIN billing.subscription_plans sp ON sp.id = s.scheduled_plan_id
			 CROSS JOIN LATERAL (SELECT billing._setting('past_due_grace', '14 days')::interval AS grace) g
			 CROSS JOIN LATERAL (SELECT COALESCE(
					s.past_due_since,
					(SELECT pg_catalog.min(i.due_at) FROM billing.invoices i
					  WHERE i.subscription_id = s.id AND i.status = 'open' AND i.deleted_at IS NULL),
					-- a renewal maintenance has not issued yet, that credit will not pay,
					-- falls due 3 days after the period end (core: kInvoiceDueAfter)
					CASE WHEN s.status IN ('active', 'past_due') AND s.current_period_end <= $2 AND s.price_cents > 0
							  AND billing.credit_balance(s.user_id, s.currency)
								  < COALESCE(sp.price_cents, s.price_cents)
						 THEN s.current_period_end + interval '3 days' END) AS dunning_from) d
			 WHERE s.user_id = $1
			   AND s.deleted_at IS NULL
			   AND s.started_at <= $2
			   AND (s.ended_at IS NULL OR s.ended_at > $2)
			UNION ALL
			SELECT f.id, 1 FROM billing.subscription_plans f WHERE f.code = 'free') AS candidate
	  JOIN billing.subscription_plans p ON p.id = candidate.plan_id
	 ORDER BY candidate.rank
	 LIMIT 1
$$;
COMMENT ON FUNCTION billing.effective_plan(text, timestamptz) IS
	'The plan whose limits and features apply to the user at the given time';


CREATE OR REPLACE FUNCTION billing._queue_upcoming(at timestamptz) RETURNS TABLE (action text, count bigint)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	-- Keyed by user and trial (its start) or period (its end), not by
	-- subscription row: a plan change during a trial or a same-interval upgrade
	-- keeps the trial or period, so it is announced once.
	SELECT 'notified_trial_will_end', pg_catalog.count(*) FILTER (WHERE billing._notify(
			s.user_id, s.id, 'trial_will_end', 'trial_will_end:' || s.user_id || ':' || billing._micros(s.trial_start), at))
	  FROM billing.subscriptions s
	 WHERE s.status = 'trialing' AND s.deleted_at IS NULL AND s.ended_at IS NULL
	   AND s.trial_end > at AND s.trial_end <= at + interval '3 days'
	UNION ALL
	-- none for a period that will not be billed (a switch to Free at its end)
	SELECT 'notified_renewal_upcoming', pg_catalog.count(*) FILTER (WHERE billing._notify(
			s.user_id, s.id, 'renewal_upcoming', 'renewal_upcoming:' || s.user_id || ':' || billing._micros(s.current_period_end), at))
	  FROM billing.subscriptions s
	  LEFT JOIN billing.subscription_plans sp ON sp.id = s.scheduled_plan_id
	 WHERE s.status = 'active' AND s.deleted_at IS NULL AND s.ended_at IS NULL
	   AND NOT s.cancel_at_period_end AND s.price_cents > 0 AND COALESCE(sp.price_cents, 1) > 0
	   AND s.current_period_end > at AND s.current_period_end <= at + interval '7 days'
$$;


-- == reports and history (issue 11)

-- == Stripe (issue 12)

-- == scale (issue 13)
-- run_maintenance's due query: keyset pages over an index on the due time
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
REVOKE ALL ON FUNCTION billing._due_at(billing.subscription_status, timestamptz, timestamptz, timestamptz) FROM PUBLIC;
CREATE INDEX subscriptions_due ON billing.subscriptions
	(billing._due_at(status, current_period_end, trial_end, started_at), id)
	WHERE ended_at IS NULL AND deleted_at IS NULL AND stripe_subscription_id IS NULL;
CREATE INDEX subscriptions_grace ON billing.subscriptions (past_due_since, id)
	WHERE status = 'past_due' AND ended_at IS NULL AND deleted_at IS NULL AND stripe_subscription_id IS NULL;

-- per-user row locks instead of advisory locks
CREATE TABLE billing.user_locks (
	user_id text PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.user_locks IS 'One row per user, locked to serialise changes to that user''s subscriptions';
REVOKE ALL ON billing.user_locks FROM PUBLIC;
GRANT SELECT ON billing.user_locks TO billing_analyst, billing_admin;
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON billing.user_locks
	FOR EACH ROW EXECUTE FUNCTION billing._touch_updated_at();
SELECT pg_catalog.pg_extension_config_dump('billing.user_locks', '');

-- inlinable conversions (RETURN bodies, no SET clause)
CREATE OR REPLACE FUNCTION billing._micros(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (EXTRACT(epoch FROM t OPERATOR(pg_catalog.-) '1970-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint;
CREATE OR REPLACE FUNCTION billing._interval_micros(i interval) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (EXTRACT(epoch FROM i) * 1000000)::bigint;
