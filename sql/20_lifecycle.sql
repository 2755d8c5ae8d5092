-- The subscription lifecycle on simulated time (SPEC §3): every function takes
-- an explicit `at`, so the story runs over months in one test.
-- a fresh install, so counts and ids do not depend on earlier tests
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
-- a compact view of a subscription row
CREATE FUNCTION pg_temp.show(s billing.subscriptions) RETURNS TABLE
	(plan text, status billing.subscription_status, period text, trial_end timestamptz, cancel_at_period_end boolean, ended_at timestamptz)
LANGUAGE sql AS $$
	SELECT p.code, s.status,
		   to_char(s.current_period_start, 'YYYY-MM-DD HH24:MI') || ' .. ' || COALESCE(to_char(s.current_period_end, 'YYYY-MM-DD HH24:MI'), 'open'),
		   s.trial_end, s.cancel_at_period_end, s.ended_at
	  FROM billing.subscription_plans p WHERE p.id = s.plan_id
$$;

-- The state machine as a table
SELECT * FROM billing.transitions();

-- == The seed's story: free -> trial -> paid -> cancel -> period end -> free
SELECT (pg_temp.show(billing.subscribe('story', 'free', '2026-01-31 10:00+00'))).*;
SELECT (pg_temp.show(billing.start_trial('story', 'pro_monthly', '2026-01-31 10:00+00'))).*;
SELECT id AS story_trial FROM billing.subscriptions WHERE user_id = 'story' AND ended_at IS NULL \gset
SELECT code FROM billing.effective_plan('story', '2026-02-01 00:00+00');
-- a second trial of the same tier is refused
SELECT billing.start_trial('story', 'pro_yearly', '2026-02-02 10:00+00');
\echo :LAST_ERROR_SQLSTATE
-- paying converts the trial: the first paid period starts at payment
SELECT (pg_temp.show(billing.record_payment(:story_trial, 2999, 'usd', true, '2026-02-03 09:00+00', 'pi_story_1'))).*;
SELECT number ~ '^INV-202602-[0-9]{6}$' AS numbered, billing_reason, status, total_cents, amount_paid_cents, amount_due_cents
  FROM billing.invoices WHERE subscription_id = :story_trial;
-- the same payment again is stored once
SELECT (pg_temp.show(billing.record_payment(:story_trial, 2999, 'usd', true, '2026-02-03 09:00+00', 'pi_story_1'))).status;
SELECT count(*) AS payments FROM billing.payments WHERE subscription_id = :story_trial;
-- cancel at period end: entitlements continue until then
SELECT (pg_temp.show(billing.cancel(:story_trial, true, '2026-02-20 12:00+00'))).*;
SELECT code FROM billing.effective_plan('story', '2026-03-02 00:00+00');
-- reactivate before the period ends, then cancel again
SELECT (pg_temp.show(billing.reactivate(:story_trial, '2026-02-21 12:00+00'))).status;
SELECT (pg_temp.show(billing.cancel(:story_trial, true, '2026-02-22 12:00+00'))).status;
-- the period ends: back to Free
SELECT * FROM billing.run_maintenance('2026-03-03 10:00+00') ORDER BY action;
SELECT * FROM billing.run_maintenance('2026-03-03 10:00+00') ORDER BY action;  -- idempotent: nothing
SELECT p.code, s.status, s.started_at, s.ended_at, s.end_reason
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id = 'story' ORDER BY s.id;
SELECT code FROM billing.effective_plan('story', '2026-03-04 00:00+00');
SELECT kind, due_at FROM billing.notifications WHERE user_id = 'story' ORDER BY id;
-- reactivating after the period is refused
SELECT billing.reactivate(:story_trial, '2026-03-05 00:00+00');
\echo :LAST_ERROR_SQLSTATE

-- == Anchored monthly periods: 31 Jan -> 28 Feb -> 31 Mar -> 30 Apr
SELECT (pg_temp.show(billing.subscribe('anchor', 'pro_monthly', '2026-01-31 12:00+00', with_trial => false))).*;
SELECT id AS anchor_sub FROM billing.subscriptions WHERE user_id = 'anchor' AND ended_at IS NULL \gset
SELECT status, total_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :anchor_sub;
-- paid six months ahead: 6 x 2999 = 17994 pays the first invoice (2999) and
-- leaves 14995 of credit, which pays the next five renewals as they are issued
SELECT (pg_temp.show(billing.record_payment(:anchor_sub, 17994, 'usd', true, '2026-01-31 12:05+00'))).*;
SELECT billing.credit_balance('anchor') AS credit;
SELECT * FROM billing.run_maintenance('2026-02-28 12:00+00') ORDER BY action;
SELECT (pg_temp.show(s)).period FROM billing.subscriptions s WHERE id = :anchor_sub;
SELECT * FROM billing.run_maintenance('2026-04-30 12:00+00') ORDER BY action;  -- two periods at once
SELECT (pg_temp.show(s)).period FROM billing.subscriptions s WHERE id = :anchor_sub;
SELECT to_char(period_start, 'YYYY-MM-DD') AS period_start, to_char(period_end, 'YYYY-MM-DD') AS period_end,
	   billing_reason, status, total_cents
  FROM billing.invoices WHERE subscription_id = :anchor_sub ORDER BY period_start;

-- == Grandfathering: a price change does not touch existing subscriptions
UPDATE billing.subscription_plans SET price_cents = 3999 WHERE code = 'pro_monthly';
SELECT * FROM billing.run_maintenance('2026-05-31 12:00+00') ORDER BY action;
SELECT total_cents FROM billing.invoices WHERE subscription_id = :anchor_sub ORDER BY period_start DESC LIMIT 1;
UPDATE billing.subscription_plans SET price_cents = 2999 WHERE code = 'pro_monthly';

-- == A failed payment with nothing owed starts no dunning: on 1 June the
-- credit has paid every invoice issued so far (the last renewal, 31 May)
SELECT (pg_temp.show(billing.record_payment(:anchor_sub, 2999, 'usd', false, '2026-06-01 12:00+00'))).status;
SELECT past_due_since IS NULL AS no_grace FROM billing.subscriptions WHERE id = :anchor_sub;

-- == Dunning: a failed payment -> past_due -> grace runs out -> expired, Free.
-- 30 June's renewal takes the last of the credit (5 x 2999 = 14995); 31 July's
-- is open when the payment for it fails at 13:00, so grace runs to 14 August 13:00
SELECT (pg_temp.show(billing.record_payment(:anchor_sub, 2999, 'usd', false, '2026-07-31 13:00+00'))).status;
SELECT status, amount_due_cents FROM billing.invoices WHERE subscription_id = :anchor_sub AND status = 'open';
SELECT code FROM billing.effective_plan('anchor', '2026-08-10 00:00+00');
SELECT * FROM billing.run_maintenance('2026-08-14 12:00+00') ORDER BY action;  -- still in grace
SELECT * FROM billing.run_maintenance('2026-08-15 12:00+00') ORDER BY action;
SELECT status, end_reason, ended_at FROM billing.subscriptions WHERE id = :anchor_sub;
SELECT code FROM billing.effective_plan('anchor', '2026-08-16 00:00+00');
SELECT kind FROM billing.notifications WHERE user_id = 'anchor' ORDER BY id;

-- == A failed payment, then a successful one, within grace
-- (subscribed 20 December: the renewal of 20 January is what the failure owes)
SELECT id AS grace_sub FROM billing.subscribe('grace', 'pro_monthly', '2025-12-20 00:00+00', with_trial => false) \gset
SELECT (billing.record_payment(:grace_sub, 2999, 'usd', true, '2025-12-20 00:01+00')).status;
SELECT (billing.record_payment(:grace_sub, 2999, 'usd', false, '2026-01-20 00:00+00')).status;
SELECT (billing.record_payment(:grace_sub, 2999, 'usd', true, '2026-01-21 00:00+00')).status;

-- == Incomplete expires after 23 hours
SELECT id AS incomplete_sub FROM billing.subscribe('late', 'pro_yearly', '2026-03-01 00:00+00', with_trial => false) \gset
SELECT * FROM billing.run_maintenance('2026-03-01 22:59+00') ORDER BY action;
SELECT * FROM billing.run_maintenance('2026-03-01 23:00+00') ORDER BY action;
SELECT status, end_reason, ended_at FROM billing.subscriptions WHERE id = :incomplete_sub;

-- == Unpaid trial ends: back to Free; trial_will_end queued 3 days before
SELECT id AS unpaid_trial FROM billing.start_trial('unpaid', 'enterprise_yearly', '2026-04-01 00:00+00') \gset
SELECT * FROM billing.run_maintenance('2026-04-28 00:00+00') ORDER BY action;
SELECT * FROM billing.run_maintenance('2026-05-01 00:00+00') ORDER BY action;
SELECT status, end_reason FROM billing.subscriptions WHERE id = :unpaid_trial;
SELECT kind, due_at FROM billing.notifications WHERE user_id = 'unpaid' ORDER BY id;

-- == Upgrade now with proration (same interval keeps the period)
SELECT id AS up_sub FROM billing.subscribe('upgrader', 'pro_yearly', '2026-01-01 00:00+00', with_trial => false) \gset
SELECT (billing.record_payment(:up_sub, 28800, 'usd', true, '2026-01-01 00:00+00')).status;
-- half-way through 2026 (181 of 365 days used): credit 28800 * 184/365, charge 99900 * 184/365
SELECT * FROM billing.preview_change(:up_sub, 'enterprise_yearly', '2026-07-01 00:00+00');
SELECT sum(amount_cents) AS amount_due FROM billing.preview_change(:up_sub, 'enterprise_yearly', '2026-07-01 00:00+00');
-- preview_change is STABLE: it reads with the snapshot of the statement that
-- calls it, so a price change made earlier in that same statement is not seen
-- (the next statement sees it)
BEGIN;
WITH repriced AS (
	UPDATE billing.subscription_plans SET price_cents = price_cents * 2 WHERE code = 'enterprise_yearly' RETURNING id
)
SELECT r.n AS repriced, sum(p.amount_cents) AS amount_due
  FROM (SELECT count(*) AS n FROM repriced) r
 CROSS JOIN LATERAL billing.preview_change(:up_sub + 0 * r.n, 'enterprise_yearly', '2026-07-01 00:00+00') p
 GROUP BY r.n;
SELECT sum(amount_cents) AS amount_due_next_statement
  FROM billing.preview_change(:up_sub, 'enterprise_yearly', '2026-07-01 00:00+00');
ROLLBACK;
SELECT (pg_temp.show(billing.change_plan(:up_sub, 'enterprise_yearly', '2026-07-01 00:00+00'))).*;
SELECT billing_reason, status, total_cents, jsonb_array_length(lines) AS lines
  FROM billing.invoices WHERE user_id = 'upgrader' AND billing_reason = 'subscription_update';
-- the proration invoice is due now; paying it keeps the upgrade out of dunning
SELECT i.subscription_id AS up_new, i.amount_due_cents AS up_due
  FROM billing.invoices i WHERE i.user_id = 'upgrader' AND i.status = 'open' \gset
SELECT (billing.record_payment(:up_new, :up_due, 'usd', true, '2026-07-01 00:10+00')).status;
SELECT p.code, s.status, s.end_reason FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id = 'upgrader' ORDER BY s.id;
-- a new interval starts a new period at the full price, minus the credit
SELECT id AS interval_sub FROM billing.subscribe('interval', 'pro_monthly', '2026-03-01 00:00+00', with_trial => false) \gset
SELECT (billing.record_payment(:interval_sub, 2999, 'usd', true, '2026-03-01 00:00+00')).status;
SELECT * FROM billing.preview_change(:interval_sub, 'pro_yearly', '2026-03-16 12:00+00');

-- == Downgrade waits for the period end
SELECT id AS down_sub FROM billing.subscribe('downgrader', 'enterprise_yearly', '2026-01-15 00:00+00', with_trial => false) \gset
SELECT (billing.record_payment(:down_sub, 99900, 'usd', true, '2026-01-15 00:00+00')).status;
SELECT count(*) AS lines_billed_now FROM billing.preview_change(:down_sub, 'pro_monthly', '2026-06-01 00:00+00');
SELECT (pg_temp.show(billing.change_plan(:down_sub, 'pro_monthly', '2026-06-01 00:00+00'))).*;
SELECT code FROM billing.effective_plan('downgrader', '2026-12-01 00:00+00');
SELECT * FROM billing.run_maintenance('2027-01-15 00:00+00') ORDER BY action;
SELECT p.code, s.status, (pg_temp.show(s)).period FROM billing.subscriptions s
  JOIN billing.subscription_plans p ON p.id = s.plan_id WHERE s.user_id = 'downgrader' ORDER BY s.id;

-- == Pause and resume: the period moves by the paused time
SELECT id AS pause_sub FROM billing.subscribe('pauser', 'pro_monthly', '2026-02-01 00:00+00', with_trial => false) \gset
SELECT (billing.record_payment(:pause_sub, 2999, 'usd', true, '2026-02-01 00:00+00')).status;
SELECT (pg_temp.show(billing.pause(:pause_sub, '2026-02-10 00:00+00'))).*;
SELECT code FROM billing.effective_plan('pauser', '2026-02-11 00:00+00');
SELECT (pg_temp.show(billing.resume(:pause_sub, '2026-02-15 00:00+00'))).*;
SELECT (billing.pause(:pause_sub, '2026-02-16 00:00+00')).status AS paused_again;
SELECT billing.cancel(:pause_sub, true, '2026-02-17 00:00+00');
\echo :LAST_ERROR_SQLSTATE

-- == Refunds: negative payments, never more than was paid
SELECT id AS paid_payment FROM billing.payments WHERE subscription_id = :up_sub AND amount_cents = 28800 \gset
SELECT amount_cents, refund_of = :paid_payment AS refunds_it FROM billing.refund(:paid_payment, 1000, '2026-07-02 00:00+00');
SELECT billing.refund(:paid_payment, 27801, '2026-07-02 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT amount_cents FROM billing.refund(:paid_payment, 27800, '2026-07-03 00:00+00');
SELECT billing.refund(:paid_payment, 1, '2026-07-03 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT sum(amount_cents) AS net FROM billing.payments WHERE id = :paid_payment OR refund_of = :paid_payment;

-- == Transitions that are not allowed change nothing
SELECT billing.reactivate(:up_sub, '2026-07-05 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT id AS paused_sub FROM billing.subscribe('pauser2', 'pro_monthly', '2026-08-01 00:00+00', with_trial => false) \gset
SELECT (billing.record_payment(:paused_sub, 2999, 'usd', true, '2026-08-01 00:01+00')).status;
SELECT (billing.pause(:paused_sub, '2026-08-02 00:00+00')).status AS paused;
SELECT billing.record_payment(:paused_sub, 2999, 'usd', false, '2026-08-03 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT status FROM billing.subscriptions WHERE id = :paused_sub;
SELECT billing.subscribe('pauser2', 'enterprise_yearly', '2026-08-04 00:00+00');
\echo :LAST_ERROR_SQLSTATE

-- == Memory: SPI's results are freed query by query, so maintenance over many
-- subscriptions holds no more SPI memory at the last renewal than at the first.
-- A trigger on billing.invoices samples the backend's memory contexts at each
-- renewal invoice.
BEGIN;
CREATE TEMP TABLE spi_memory (n serial, tuptables bigint, spi_bytes bigint);
-- (SECURITY DEFINER: billing's code, and so this trigger, runs as billing_owner,
-- which may not read the memory contexts)
CREATE FUNCTION pg_temp.sample_spi_memory() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	INSERT INTO pg_temp.spi_memory (tuptables, spi_bytes)
	SELECT count(*) FILTER (WHERE name = 'SPI TupTable'), sum(total_bytes) FILTER (WHERE name LIKE 'SPI %')
	  FROM pg_catalog.pg_backend_memory_contexts;
	RETURN NULL;
END
$$;
CREATE TRIGGER sample_spi_memory AFTER INSERT ON billing.invoices
	FOR EACH ROW EXECUTE FUNCTION pg_temp.sample_spi_memory();
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval, started_at,
								   billing_anchor, current_period_start, current_period_end)
SELECT 'bulk-' || i, p.id, 'active', p.price_cents, p.currency, p.billing_interval, '2030-01-01 00:00+00',
	   '2030-01-01 00:00+00', '2030-01-01 00:00+00', '2030-02-01 00:00+00'
  FROM generate_series(1, 500) i, billing.subscription_plans p WHERE p.code = 'pro_monthly';
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2030-02-01 00:00+00');
SELECT count(*) AS bulk_renewals FROM billing.invoices WHERE user_id LIKE 'bulk-%';
-- (before SPI results were freed: 1652 more result sets and 30 kB more per renewal)
SELECT max(tuptables) = min(tuptables) AS no_result_set_kept,
	   (max(spi_bytes) - min(spi_bytes)) / count(*) < 2048 AS under_2kb_per_renewal
  FROM spi_memory;
ROLLBACK;
