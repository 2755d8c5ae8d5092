-- Money and access in every sequence (issue 10): each numbered case of the
-- issue, with the hand arithmetic. All times UTC; C(u) = u's current subscription.
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.c(u text) RETURNS bigint LANGUAGE sql AS $$
	SELECT id FROM billing.subscriptions WHERE user_id = u AND ended_at IS NULL
$$;
CREATE FUNCTION pg_temp.invoices(u text) RETURNS TABLE
	(period text, reason text, status text, total bigint, credit bigint, paid bigint, due bigint, void_reason text)
LANGUAGE sql AS $$
	SELECT to_char(period_start, 'YYYY-MM-DD'), billing_reason, status, total_cents, credit_applied_cents,
		   amount_paid_cents, amount_due_cents, void_reason
	  FROM billing.invoices WHERE user_id = u ORDER BY issued_at, id
$$;
CREATE FUNCTION pg_temp.subs(u text) RETURNS TABLE (plan text, status billing.subscription_status, ended_at timestamptz, end_reason text)
LANGUAGE sql AS $$
	SELECT p.code, s.status, s.ended_at, s.end_reason
	  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
	 WHERE s.user_id = u ORDER BY s.id
$$;
-- a longer grace for case 1, so two renewals can be open at once
SELECT billing.configure('past_due_grace', '45 days');

-- == 1. An overpayment settles the oldest open invoice, then the next, then credit
SELECT status FROM billing.subscribe('c1', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c1'), 2999, 'usd', true, '2030-01-01 00:05');
-- renewals on 1 Feb and 1 Mar (2999 each), unpaid: February is overdue on 4 Feb (past_due)
SELECT * FROM billing.run_maintenance('2030-03-01') ORDER BY action;
-- 5998 = 2999 (February, oldest first) + 2999 (March): both paid, nothing left, active again
SELECT status, past_due_since FROM billing.record_payment(pg_temp.c('c1'), 5998, 'usd', true, '2030-03-01 01:00');
SELECT * FROM pg_temp.invoices('c1');
-- 7000 more: nothing open, so all of it is credit ...
SELECT status FROM billing.record_payment(pg_temp.c('c1'), 7000, 'usd', true, '2030-03-02');
SELECT billing.credit_balance('c1') AS credit;
-- ... applied to April's renewal before any payment is due: 7000 - 2999 = 4001 left
SELECT * FROM billing.run_maintenance('2030-04-01') ORDER BY action;
SELECT * FROM pg_temp.invoices('c1') WHERE period = '2030-04-01';
SELECT billing.credit_balance('c1') AS credit;
SELECT billing.configure('past_due_grace', '14 days');

-- == 2. Partial payments accumulate; a payment nothing can settle is refused
SELECT status FROM billing.start_trial('c2', 'pro_monthly', '2030-01-01');
-- 1000 during the trial: held as credit, still trialing
SELECT status FROM billing.record_payment(pg_temp.c('c2'), 1000, 'usd', true, '2030-01-02');
SELECT billing.credit_balance('c2') AS credit;
-- 1999 more: 1000 + 1999 = 2999 covers the first month; the trial converts now.
-- The first invoice takes the 1000 of credit first, then 1999 of this payment.
SELECT status FROM billing.record_payment(pg_temp.c('c2'), 1999, 'usd', true, '2030-01-03');
SELECT * FROM pg_temp.invoices('c2');
SELECT billing.credit_balance('c2') AS credit;
-- a trial canceled at period end has nothing to pay: refused, nothing stored
SELECT status FROM billing.start_trial('c2b', 'pro_monthly', '2030-01-01');
SELECT status FROM billing.cancel(pg_temp.c('c2b'), true, '2030-01-02');
SELECT billing.record_payment(pg_temp.c('c2b'), 2999, 'usd', true, '2030-01-03');
\echo :LAST_ERROR_SQLSTATE
-- nor has a Free subscription
SELECT status FROM billing.subscribe('c2c', 'free', '2030-01-01');
SELECT billing.record_payment(pg_temp.c('c2c'), 2999, 'usd', true, '2030-01-03');
\echo :LAST_ERROR_SQLSTATE
-- nor an ended one
SELECT id AS c2b_sub FROM billing.subscriptions WHERE user_id = 'c2b' AND status = 'canceled' \gset
SELECT * FROM billing.run_maintenance('2030-01-20') ORDER BY action;
SELECT billing.record_payment(:c2b_sub, 2999, 'usd', true, '2030-01-21');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS payments_stored FROM billing.payments WHERE user_id IN ('c2b', 'c2c');

-- == 3. Proration credits only time that was paid for; nothing is stranded open
SELECT status FROM billing.subscribe('c3', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c3'), 2999, 'usd', true, '2030-01-01');
SELECT * FROM billing.run_maintenance('2030-02-01') ORDER BY action;  -- February issued, due 4 Feb, unpaid
-- February (28 days) was not paid: no credit for its 27 unused days (it would
-- have been 2999 x 27/28 = 2891.9 -> 2892); the new yearly plan costs 99900 in full
SELECT * FROM billing.preview_change(pg_temp.c('c3'), 'enterprise_yearly', '2030-02-02');
SELECT status FROM billing.change_plan(pg_temp.c('c3'), 'enterprise_yearly', '2030-02-02');
-- February's invoice is void (plan_changed), not left open on the ended subscription
SELECT * FROM pg_temp.invoices('c3');
-- an incomplete subscription that expires voids its invoice ...
SELECT status FROM billing.subscribe('c3b', 'pro_yearly', '2030-01-01', false);
SELECT * FROM billing.run_maintenance('2030-01-02') ORDER BY action;
SELECT * FROM pg_temp.invoices('c3b');
-- ... and so does one replaced by subscribe; what was paid toward it becomes credit
SELECT status FROM billing.subscribe('c3c', 'pro_yearly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c3c'), 800, 'usd', true, '2030-01-01 01:00');
SELECT status FROM billing.subscribe('c3c', 'pro_monthly', '2030-01-01 02:00', false);
-- 800 paid toward the void 28800 invoice pays 800 of the new 2999: 2199 due
SELECT * FROM pg_temp.invoices('c3c');
SELECT billing.credit_balance('c3c') AS credit;

-- == 4. Refunds: never before their payment; amounts bounded (two concurrent
-- refunds: test/isolation/specs/refund_concurrent.spec)
SELECT id AS c4_payment FROM billing.payments WHERE user_id = 'c3' AND amount_cents = 2999 \gset
SELECT billing.refund(:c4_payment, 100, '2029-12-31');
\echo :LAST_ERROR_SQLSTATE
SELECT amount_cents FROM billing.refund(:c4_payment, 100, '2030-01-01');
SELECT status FROM billing.subscribe('c4', 'pro_monthly', '2030-01-01', false);
SELECT billing.record_payment(pg_temp.c('c4'), 9223372036854775807, 'usd', true, '2030-01-01');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.record_payment(pg_temp.c('c4'), 100000000001, 'usd', true, '2030-01-01');
\echo :LAST_ERROR_SQLSTATE
-- the largest payment is accepted (it pays 2999, the rest is credit) and reports still add up
SELECT status FROM billing.record_payment(pg_temp.c('c4'), 100000000000, 'usd', true, '2030-01-01');
SELECT currency, revenue_cents FROM billing.arpu('2029-01-01', '2031-01-01');

-- == 5. A paid plan without payment is incomplete, whatever the route
SELECT status FROM billing.subscribe('c5', 'free', '2030-01-01');
SELECT status FROM billing.change_plan(pg_temp.c('c5'), 'enterprise_yearly', '2030-01-02');
SELECT code FROM billing.effective_plan('c5', '2030-01-02 01:00');
SELECT * FROM pg_temp.invoices('c5');
SELECT * FROM billing.mrr('2030-01-02 01:00');
-- unpaid for 23 hours: expired, its invoice void, back on Free
SELECT * FROM billing.run_maintenance('2030-01-03') ORDER BY action;
SELECT * FROM pg_temp.subs('c5');
SELECT * FROM pg_temp.invoices('c5');
-- an unpaid renewal leads to past_due once it is overdue (issued 1 Feb, due 4 Feb)
SELECT status FROM billing.subscribe('c5b', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c5b'), 2999, 'usd', true, '2030-01-01');
SELECT * FROM billing.run_maintenance('2030-02-03') ORDER BY action;
SELECT status FROM billing.subscriptions WHERE id = pg_temp.c('c5b');
SELECT * FROM billing.run_maintenance('2030-02-04') ORDER BY action;
SELECT status, past_due_since FROM billing.subscriptions WHERE id = pg_temp.c('c5b');

-- == 6. Dunning cannot be escaped
-- (subscribed 10 December: the failure on 10 January owes that day's renewal;
-- a failure with nothing owed starts no dunning, sql/20_lifecycle.sql)
SELECT status FROM billing.subscribe('c6', 'pro_monthly', '2029-12-10', false);
SELECT status FROM billing.record_payment(pg_temp.c('c6'), 2999, 'usd', true, '2029-12-10');
SELECT status FROM billing.record_payment(pg_temp.c('c6'), 2999, 'usd', false, '2030-01-10');
-- past_due -> cancel at period end -> reactivate: still past_due, dunning since 10 Jan
SELECT status FROM billing.cancel(pg_temp.c('c6'), true, '2030-01-11');
SELECT status, past_due_since FROM billing.reactivate(pg_temp.c('c6'), '2030-01-12');
-- canceled at period end (10 Feb) while past_due: access ends at the grace end,
-- 10 Jan + 14 days = 24 Jan, before the period end
SELECT status FROM billing.cancel(pg_temp.c('c6'), true, '2030-01-13');
SELECT code FROM billing.effective_plan('c6', '2030-01-23 23:59');
SELECT code FROM billing.effective_plan('c6', '2030-01-24');
SELECT * FROM billing.run_maintenance('2030-01-25') ORDER BY action;
SELECT * FROM pg_temp.subs('c6');
-- a scheduled downgrade does not start a fresh active subscription while
-- past_due: 1 Dec's renewal is issued, the downgrade to Free is scheduled for
-- the period end (1 Jan 2031), then the renewal's payment fails. On 1 Jan the
-- period rolls (a renewal) instead of the downgrade; the grace of 40 days
-- (1 Dec 02:00 + 40 days = 10 Jan 2031 02:00) then ends it: expired, Free.
SELECT billing.configure('past_due_grace', '40 days');
SELECT status FROM billing.subscribe('c6b', 'pro_monthly', '2030-11-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c6b'), 2999, 'usd', true, '2030-11-01');
SELECT * FROM billing.run_maintenance('2030-12-01') ORDER BY action;
SELECT status, scheduled_change_at FROM billing.change_plan(pg_temp.c('c6b'), 'free', '2030-12-01 01:00');
SELECT status FROM billing.record_payment(pg_temp.c('c6b'), 2999, 'usd', false, '2030-12-01 02:00');
SELECT * FROM billing.run_maintenance('2031-01-02') ORDER BY action;
SELECT * FROM pg_temp.subs('c6b');
SELECT code FROM billing.effective_plan('c6b', '2031-01-09');  -- grace ends 10 Jan 2031 02:00
SELECT * FROM billing.run_maintenance('2031-01-10 02:00') ORDER BY action;
SELECT * FROM pg_temp.subs('c6b');
SELECT billing.configure('past_due_grace', '14 days');

-- == 7. Entitlements are computed for any `at`, whether or not maintenance has run
SELECT status FROM billing.start_trial('c7', 'pro_monthly', '2030-01-01');
SELECT code FROM billing.effective_plan('c7', '2030-01-14 23:59');
SELECT code FROM billing.effective_plan('c7', '2030-03-01');  -- trial ended 15 Jan
-- an unpaid renewal never issued: period end 1 Feb + 3 days due + 14 days grace = 18 Feb
SELECT status FROM billing.subscribe('c7b', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c7b'), 2999, 'usd', true, '2030-01-01');
SELECT code FROM billing.effective_plan('c7b', '2030-02-17 23:59');
SELECT code FROM billing.effective_plan('c7b', '2030-02-18');
-- a scheduled switch to Free applies from the period end
SELECT status FROM billing.change_plan(pg_temp.c('c7b'), 'free', '2030-01-10');
SELECT code FROM billing.effective_plan('c7b', '2030-02-01');
-- and maintenance then writes down what the computation said
SELECT * FROM billing.run_maintenance('2030-03-01') ORDER BY action;
SELECT * FROM pg_temp.subs('c7');
SELECT * FROM pg_temp.subs('c7b');

-- == 8. One trial per tier, whatever the route
SELECT status FROM billing.start_trial('c8', 'pro_monthly', '2030-01-01');
SELECT status FROM billing.cancel(pg_temp.c('c8'), false, '2030-01-02');
SELECT status FROM billing.start_trial('c8', 'enterprise_yearly', '2030-01-03');
-- switching to Pro during the Enterprise trial: Pro's trial was used, so it must be paid
SELECT status FROM billing.change_plan(pg_temp.c('c8'), 'pro_monthly', '2030-01-04');
SELECT * FROM pg_temp.invoices('c8');
SELECT billing.start_trial('c8', 'pro_yearly', '2030-01-05');
\echo :LAST_ERROR_SQLSTATE

-- == 9. run_maintenance is idempotent for any gap; notifications once each
-- pro_yearly paid 2030-01-01 plus three months ahead: 28800 + 3 x 2999 = 37797
SELECT status FROM billing.subscribe('c9', 'pro_yearly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c9'), 37797, 'usd', true, '2030-01-01');
SELECT status FROM billing.change_plan(pg_temp.c('c9'), 'pro_monthly', '2030-06-01');
-- one run: yearly ends 1 Jan 2031, monthly starts (January paid from credit),
-- then February and March renew from credit: 8997 - 3 x 2999 = 0
SELECT * FROM billing.run_maintenance('2031-03-15') ORDER BY action;
SELECT * FROM billing.run_maintenance('2031-03-15') ORDER BY action;  -- nothing
SELECT * FROM pg_temp.invoices('c9');
-- change_plan on a trial whose end has passed: a clear QB010, not 23514
SELECT status FROM billing.start_trial('c9b', 'pro_monthly', '2030-01-01');
SELECT billing.change_plan(pg_temp.c('c9b'), 'enterprise_yearly', '2030-03-01');
\echo :LAST_ERROR_SQLSTATE
-- trial_will_end once, though the plan changes during the trial (trial ends 15 Jan)
SELECT status FROM billing.start_trial('c9c', 'pro_monthly', '2030-01-01');
SELECT count FROM billing.run_maintenance('2030-01-12') WHERE action = 'notified_trial_will_end';
SELECT status FROM billing.change_plan(pg_temp.c('c9c'), 'pro_yearly', '2030-01-13');
SELECT count FROM billing.run_maintenance('2030-01-13') WHERE action = 'notified_trial_will_end';
SELECT kind, count(*) FROM billing.notifications WHERE user_id = 'c9c' GROUP BY kind;
-- renewal_upcoming once after a same-interval upgrade (period kept, ends 1 Jan 2031)
SELECT status FROM billing.subscribe('c9d', 'pro_yearly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c9d'), 28800, 'usd', true, '2030-01-01');
SELECT count FROM billing.run_maintenance('2030-12-26') WHERE action = 'notified_renewal_upcoming';
SELECT status FROM billing.change_plan(pg_temp.c('c9d'), 'enterprise_yearly', '2030-12-27');
SELECT count FROM billing.run_maintenance('2030-12-27') WHERE action = 'notified_renewal_upcoming';
SELECT kind, count(*) FROM billing.notifications WHERE user_id = 'c9d' GROUP BY kind;
-- none for a period that ends in a switch to Free
SELECT status FROM billing.subscribe('c9e', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('c9e'), 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.change_plan(pg_temp.c('c9e'), 'free', '2030-01-10');
SELECT * FROM billing.run_maintenance('2030-01-27') ORDER BY action;
SELECT count(*) AS renewal_notices FROM billing.notifications WHERE user_id = 'c9e' AND kind = 'renewal_upcoming';

-- == Found by the model test (seed 1, look-ahead): a failed payment while a
-- renewal is paid ahead from credit. (It used to start dunning that the
-- renewal paid from credit then settled; now a failure with nothing owed
-- starts none.)
SELECT status FROM billing.subscribe('m1', 'pro_monthly', '2030-01-01', false);
-- 5998: 2999 pays January, 2999 is credit
SELECT status FROM billing.record_payment(pg_temp.c('m1'), 5998, 'usd', true, '2030-01-01');
-- a failed payment on 25 Jan: January is paid, nothing owed: stays active
SELECT status FROM billing.record_payment(pg_temp.c('m1'), 2999, 'usd', false, '2030-01-25');
SELECT past_due_since IS NULL AS no_grace FROM billing.subscriptions WHERE id = pg_temp.c('m1');
-- 1 Feb: the renewal is paid from credit, nothing is open, so on 20 Feb still Pro;
-- March's renewal (1 Mar, due 4 Mar) is unpaid: grace ends 18 Mar
SELECT code FROM billing.effective_plan('m1', '2030-02-20');
SELECT code FROM billing.effective_plan('m1', '2030-03-17 23:59');
SELECT code FROM billing.effective_plan('m1', '2030-03-18');

-- == Found by the model test (seed 1, step 2073, with pause/resume): a downgrade
-- scheduled before a pause happens at the period end the pause moved, not before.
SELECT status FROM billing.subscribe('m2', 'pro_monthly', '2030-12-24 18:37:58', false);
-- 3999: 2999 pays the first period (24 Dec 2030 18:37:58 to 24 Jan 2031), 1000 is credit
SELECT status FROM billing.record_payment(pg_temp.c('m2'), 3999, 'usd', true, '2030-12-24 18:40:38');
-- the switch to Free waits for the period end, 24 Jan 2031 18:37:58
SELECT status, scheduled_change_at FROM billing.change_plan(pg_temp.c('m2'), 'free', '2030-12-24 18:47:27');
-- paused 30 Dec 2030 12:25:46 to 11 Aug 2031 15:34:31 = 224 d 03:08:45 not billed:
-- the period ends 24 Jan 2031 18:37:58 + 224 d 03:08:45 = 5 Sep 2031 21:46:43, and the switch with it
SELECT status FROM billing.pause(pg_temp.c('m2'), '2030-12-30 12:25:46');
SELECT status, current_period_end, scheduled_change_at FROM billing.resume(pg_temp.c('m2'), '2031-08-11 15:34:31');
SELECT code FROM billing.effective_plan('m2', '2031-08-11 15:34:31');
SELECT code FROM billing.effective_plan('m2', '2031-09-05 21:46:42');
SELECT code FROM billing.effective_plan('m2', '2031-09-05 21:46:43');

-- == Refunds (Stripe's behaviour): a refund never reopens an invoice; it first
-- takes back the credit its payment created, if that credit is still unspent.
SELECT status FROM billing.subscribe('m3', 'pro_monthly', '2030-01-01', false);
-- 3999: 2999 pays January's invoice, 1000 is credit
SELECT status FROM billing.record_payment(pg_temp.c('m3'), 3999, 'usd', true, '2030-01-01');
-- refund 1500: min(1500, 1000 put into credit, 1000 balance) = 1000 of credit
-- taken back, 500 of invoice money; the invoice stays paid, the subscription active
SELECT amount_cents FROM billing.refund((SELECT max(id) FROM billing.payments WHERE user_id = 'm3'), 1500, '2030-01-05');
SELECT billing.credit_balance('m3') AS credit;
SELECT * FROM pg_temp.invoices('m3');
SELECT status FROM billing.subscriptions WHERE id = pg_temp.c('m3');
-- refund the remaining 3999 - 1500 = 2499: the 1000 of credit was taken back
-- already, nothing more comes from credit
SELECT amount_cents FROM billing.refund((SELECT min(id) FROM billing.payments WHERE user_id = 'm3'), 2499, '2030-01-06');
SELECT billing.credit_balance('m3') AS credit;
-- (what each refund did not take from credit is recorded against January's
-- paid invoice: 500, then 2499, refund_of_paid_invoice)
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'm3' ORDER BY id;
-- what m3 paid net: 3999 - 1500 - 2499 = 0 (revenue() sums the same rows)
SELECT sum(amount_cents) AS net FROM billing.payments WHERE user_id = 'm3';
-- credit already spent is not taken back: 5998 = 2999 (January) + 2999 credit,
-- which pays February's renewal on 1 Feb; a refund of 2999 on 2 Feb takes 0 of credit
SELECT status FROM billing.subscribe('m4', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('m4'), 5998, 'usd', true, '2030-01-01');
SELECT count(*) AS maintenance_ran FROM billing.run_maintenance('2030-02-01') WHERE action = 'renewed';
SELECT amount_cents FROM billing.refund((SELECT max(id) FROM billing.payments WHERE user_id = 'm4'), 2999, '2030-02-02');
SELECT billing.credit_balance('m4') AS credit;
SELECT * FROM pg_temp.invoices('m4');

-- == preview_change sees the subscription as change_plan will at `at`: what
-- time made due is applied first (projected, nothing written)
SELECT status FROM billing.subscribe('m5', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('m5'), 2999, 'usd', true, '2030-01-01');
-- no maintenance since: on 2 Feb the 1 Feb renewal (2999) is issued and unpaid,
-- so the period 1 Feb - 1 Mar was not paid for and nothing of it is credited:
-- the year of Enterprise costs 99900 (the old preview credited 27/28 of the
-- January price for a period that had already ended)
SELECT * FROM billing.preview_change(pg_temp.c('m5'), 'enterprise_yearly', '2030-02-02');
SELECT count(*) AS invoices_written FROM billing.invoices WHERE user_id = 'm5';
SELECT status FROM billing.change_plan(pg_temp.c('m5'), 'enterprise_yearly', '2030-02-02');
SELECT l->>'description' AS description, l->>'amount_cents' AS amount_cents
  FROM billing.invoices i, jsonb_array_elements(i.lines) l
 WHERE i.subscription_id = pg_temp.c('m5');
-- a subscription whose canceled period has ended by `at` cannot change: QB010, as change_plan
SELECT status FROM billing.subscribe('m6', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('m6'), 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.cancel(pg_temp.c('m6'), true, '2030-01-10');
SELECT * FROM billing.preview_change(pg_temp.c('m6'), 'enterprise_yearly', '2030-02-02');
\echo :LAST_ERROR_SQLSTATE
-- before its period end it is canceled: an upgrade needs reactivate first (QB010)
SELECT * FROM billing.preview_change(pg_temp.c('m6'), 'enterprise_yearly', '2030-01-31');
\echo :LAST_ERROR_SQLSTATE
-- credit_balance needs a user and a currency (22004), like every other function
SELECT billing.credit_balance(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.credit_balance('m3', NULL);
\echo :LAST_ERROR_SQLSTATE

-- == The quota cache's bound comes from the same projection: paid monthly from
-- 1 Jan, no maintenance. On 2 Feb the 1 Feb renewal (unpaid, projected) falls
-- due on 4 Feb; on 5 Feb dunning runs until 4 Feb + 14 days = 18 Feb; after
-- that the user is on Free and nothing more changes by time alone.
SELECT status FROM billing.subscribe('m7', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('m7'), 2999, 'usd', true, '2030-01-01');
SELECT billing._entitlement_changes_at('m7', '2030-01-15') AS jan_15,
	   billing._entitlement_changes_at('m7', '2030-02-02') AS feb_2,
	   billing._entitlement_changes_at('m7', '2030-02-05') AS feb_5,
	   billing._entitlement_changes_at('m7', '2030-02-18') AS feb_18;

-- == Found by the model test's history property (seeds 102, 121): an invoice
-- that fell due while paused started dunning at its old due date, so a
-- subscription resumed months later was ended in the past (before its resume)
-- and the reports of those months changed. The paused time moves the open
-- invoices' due dates, as it moves the period.
SELECT status FROM billing.subscribe('m8', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment(pg_temp.c('m8'), 2999, 'usd', true, '2030-01-01');
-- 1 Feb: the renewal (2999) is issued, due 4 Feb; paused on 2 Feb, unpaid
SELECT count(*) AS maintenance_ran FROM billing.run_maintenance('2030-02-01') WHERE action = 'renewed';
SELECT status FROM billing.pause(pg_temp.c('m8'), '2030-02-02');
-- resumed 1 Jun: paused 119 days; the period ends 1 Mar + 119 d = 28 Jun, the
-- invoice falls due 4 Feb + 119 d = 3 Jun, dunning runs to 3 Jun + 14 d = 17 Jun
SELECT status, current_period_end FROM billing.resume(pg_temp.c('m8'), '2030-06-01');
SELECT due_at FROM billing.invoices WHERE user_id = 'm8' AND status = 'open';
SELECT code FROM billing.effective_plan('m8', '2030-06-01');
SELECT code FROM billing.effective_plan('m8', '2030-06-16 23:59');
SELECT code FROM billing.effective_plan('m8', '2030-06-17');
-- maintenance then writes down the same: ended at the grace end, 17 Jun, after the resume
SELECT count(*) > 0 AS maintenance_ran FROM billing.run_maintenance('2030-06-17');
SELECT plan, status, ended_at, end_reason FROM pg_temp.subs('m8');
