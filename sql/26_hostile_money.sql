-- Money defects a hostile tester found (session 3): M1 backdated operations,
-- M2 refund after a void, M3 external id retries, M5 a failed payment with
-- nothing owed, M6 usage overflow, H1 unbounded catch-up, M7 a partial refund
-- then a void, M4 two upgrades in one second. Each case with its hand arithmetic. Times UTC.
SET client_min_messages = warning;  -- the extension may or may not exist: no NOTICE either way
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY default

-- == M1: an operation dated before the subscription's latest change is 22023.
-- Subscribed 1 Jan, paid 1 Jan 01:00; paid again 2 Feb: catch-up renews on
-- 1 Feb (period 1 Feb - 1 Mar) and the 2999 pays it. A cancel dated 15 Jan
-- would end a subscription whose paid period starts 1 Feb: refused.
SELECT id AS s FROM billing.subscribe('bd1', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01 01:00');
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-02-02');
SELECT status, ended_at, current_period_start FROM billing.cancel(:s, false, '2030-01-15');
-- every operation, and a payment, refuses the same time; nothing changed
SELECT status FROM billing.pause(:s, '2030-01-20');
SELECT status FROM billing.change_plan(:s, 'pro_yearly', '2030-01-20');
SELECT status FROM billing.record_payment(:s, 100, 'usd', true, '2030-02-01 12:00');
SELECT status, current_period_start, current_period_end, ended_at FROM billing.subscriptions WHERE id = :s;
-- at or after the latest change (the 2 Feb payment) it is accepted
SELECT status, current_period_end FROM billing.cancel(:s, true, '2030-02-02');
-- a pause is a change too: a resume dated before it is refused
SELECT id AS s FROM billing.subscribe('bd2', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.pause(:s, '2030-01-10');
SELECT status FROM billing.resume(:s, '2030-01-09');
SELECT status FROM billing.resume(:s, '2030-01-10');
-- a reactivate leaves no time on the row (canceled_at is cleared); the
-- history's open interval records it: canceled 12 Jan, reactivated 20 Jan,
-- a cancel dated 15 Jan is refused
SELECT status FROM billing.cancel(:s, true, '2030-01-12');
SELECT status FROM billing.reactivate(:s, '2030-01-20');
SELECT status FROM billing.cancel(:s, false, '2030-01-15');
SELECT status FROM billing.cancel(:s, false, '2030-01-20');

-- == M2: a refund after a void takes back the credit the void gave back.
-- 1000 pays toward the 2999 first invoice (open, 1999 due); the cancel voids
-- it and returns the 1000 to credit (void_to_credit). That credit is the
-- payment's: refunding the 1000 takes it back, credit 1000 - 1000 = 0.
SELECT id AS s FROM billing.subscribe('vr1', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 1000, 'usd', true, '2030-01-01 01:00');
SELECT status FROM billing.cancel(:s, false, '2030-01-01 02:00');
SELECT billing.credit_balance('vr1') AS credit_after_void;
SELECT id AS p FROM billing.payments WHERE user_id = 'vr1' AND amount_cents = 1000 \gset
SELECT amount_cents FROM billing.refund(:p, 1000, '2030-01-01 03:00');
SELECT billing.credit_balance('vr1') AS credit_after_refund;
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'vr1' ORDER BY id;
-- partial refunds of a payment whose invoice was voided:
-- 2000 toward a 2999 invoice, voided by a cancel (2000 back to credit)
SELECT id AS s FROM billing.subscribe('vr2', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2000, 'usd', true, '2030-01-01 01:00');
SELECT status FROM billing.cancel(:s, false, '2030-01-01 02:00');
SELECT id AS p FROM billing.payments WHERE user_id = 'vr2' AND amount_cents = 2000 \gset
-- credit 2000; refund 500: 500 taken back, credit 1500; refund 1500 more: credit 0
SELECT amount_cents FROM billing.refund(:p, 500, '2030-01-01 03:00');
SELECT billing.credit_balance('vr2') AS credit_after_500;
SELECT amount_cents FROM billing.refund(:p, 1500, '2030-01-01 04:00');
SELECT billing.credit_balance('vr2') AS credit_after_2000;

-- == M3: a repeat of an external id. The same payment again (same amount,
-- currency and outcome) is stored once; a different one is 22023, never
-- dropped silently: a retry after a failure needs its own external id.
SELECT id AS s FROM billing.subscribe('ex1', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', false, '2030-01-01 01:00', 'pi_retry');
SELECT status FROM billing.record_payment(:s, 2999, 'usd', false, '2030-01-01 01:30', 'pi_retry');
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01 02:00', 'pi_retry');
SELECT status FROM billing.record_payment(:s, 1000, 'usd', false, '2030-01-01 02:00', 'pi_retry');
-- the success under its own id (the charge) pays the invoice: 2999 - 2999 = 0 due
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01 02:00', 'ch_retry');
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01 02:30', 'ch_retry');
SELECT external_id, amount_cents, status FROM billing.payments WHERE user_id = 'ex1' ORDER BY id;
SELECT status, amount_due_cents FROM billing.invoices WHERE user_id = 'ex1';
-- another subscription's external id
SELECT id AS s FROM billing.subscribe('ex2', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01 03:00', 'ch_retry');

-- == M6: usage cannot overflow the rollup or maintenance. A record is at most
-- 10^12 (22003 above, like a payment's 10^11); totals are summed as numeric
-- and a daily total or usage() beyond bigint saturates at 9223372036854775807.
SELECT quantity FROM billing.record_usage('ov1', 'api_calls', 9223372036854775807, '2030-06-05 10:00', 'k1');
SELECT quantity FROM billing.record_usage('ov1', 'api_calls', 1000000000000, '2030-06-05 10:00', 'k1');
-- 9,300,000 records of 10^12 would pass bigint; a superuser-written pending
-- row stands in for them: 9223372036854775000 + 10^12 saturates
INSERT INTO billing.usage_pending (record_id, user_id, metric, quantity, recorded_at)
VALUES (-1, 'ov1', 'api_calls', 9223372036854775000, '2030-06-05 11:00');
SELECT billing.usage('ov1', 'api_calls', '2030-06-01', '2030-07-01');
SELECT quantity FROM billing.record_usage('ov2', 'api_calls', 5, '2030-06-05 10:00');
SELECT count(*) AS maintenance_ran FROM billing.run_maintenance('2030-09-01');
SELECT user_id, day, quantity FROM billing.usage_daily WHERE user_id IN ('ov1', 'ov2') ORDER BY 1;
-- a later rollup onto the saturated day stays saturated
SELECT quantity FROM billing.record_usage('ov1', 'api_calls', 7, '2030-06-05 12:00');
SELECT count(*) AS maintenance_ran FROM billing.run_maintenance('2030-09-02');
SELECT billing.usage('ov1', 'api_calls', '2030-06-01', '2030-07-01'),
	   billing.usage('ov2', 'api_calls', '2030-06-01', '2030-07-01');

-- == H1: an operation with more than 1000 due actions to apply first is
-- 54000 at once, not a catch-up that runs until statement_timeout. 10^11
-- prepays 33 million months; cancel dated 2200 would renew 170 * 12 = 2040 times.
SELECT id AS s FROM billing.subscribe('h1', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 100000000000, 'usd', true, '2030-01-01');
SELECT status FROM billing.cancel(:s, true, '2200-01-01');
SELECT count(*) AS invoices FROM billing.invoices WHERE user_id = 'h1';
-- within the bound (2 renewals) it is caught up and applied
SELECT status, current_period_start FROM billing.cancel(:s, true, '2030-03-15');

-- == M5: a failed payment with nothing owed starts no dunning. Paid 1 Jan for
-- January; a failure on 15 Jan owes nothing: still active, no grace, Pro on
-- 1 Feb (the renewal then is open, due 4 Feb, not yet overdue).
SELECT id AS s FROM billing.subscribe('m5', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status, past_due_since FROM billing.record_payment(:s, 2999, 'usd', false, '2030-01-15');
SELECT kind FROM billing.notifications WHERE user_id = 'm5' AND kind = 'payment_failed';
SELECT code FROM billing.effective_plan('m5', '2030-02-01 12:00');
-- the same failure once the renewal is open starts dunning: grace from 2 Feb
SELECT status, past_due_since FROM billing.record_payment(:s, 2999, 'usd', false, '2030-02-02');

-- == M7: a refund of part of a payment whose invoice is still open, then a
-- void of that invoice. Subscribed without a trial: invoice 2999 open. 1200
-- paid: 1200 paid, 1799 due. Refund 600: no credit to take back, so 600
-- leaves the open invoice (paid 600, due 2399). Canceled now: the invoice is
-- void and returns only the 600 still paid to credit, not 1200. Refunding the
-- other 600 takes that credit back: balance 0, payments net 0.
SELECT id AS s FROM billing.subscribe('pr', 'pro_monthly', '2030-03-01', false) \gset
SELECT status FROM billing.record_payment(:s, 1200, 'usd', true, '2030-03-01 01:00');
SELECT id AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT amount_cents FROM billing.refund(:p, 600, '2030-03-01 02:00');
SELECT status, amount_paid_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'pr' ORDER BY id;
SELECT status FROM billing.cancel(:s, false, '2030-03-01 03:00');
SELECT status, amount_paid_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT billing.credit_balance('pr') AS credit_after_void;
SELECT amount_cents FROM billing.refund(:p, 600, '2030-03-01 04:00');
SELECT billing.credit_balance('pr') AS credit_after_refund,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = 'pr') AS payments_net;

-- == M4: two upgrades at the same instant before the first one's invoice is
-- paid. March paid (2999); at 1 Mar 00:00 the upgrade to pro_yearly credits
-- the whole unused month: invoice 28800 - 2999 = 25801, open. At the same
-- instant the upgrade to enterprise_yearly credits nothing for pro_yearly
-- (not paid) and voids that invoice; the void undoes it, so the 2999 credit
-- line comes back as credit (proration_credit) and the new invoice takes it:
-- 99900 - 2999 = 96901 due. Before, the 2999 paid for March was lost.
SELECT id AS s FROM billing.subscribe('m4', 'pro_monthly', '2030-03-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-03-01');
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-03-01') \gset
SELECT status, total_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT id AS s FROM billing.change_plan(:s, 'enterprise_yearly', '2030-03-01') \gset
SELECT i.billing_reason, i.status, i.total_cents, i.credit_applied_cents, i.amount_due_cents
  FROM billing.invoices i WHERE i.user_id = 'm4' ORDER BY i.id;
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'm4' ORDER BY id;
SELECT billing.credit_balance('m4') AS credit;

-- == M8: a refund never leaves the customer holding more than they paid net.
-- (a) 2999 paid for January (1 Jan). Upgraded to pro_yearly on 2 Jan: the
-- unused 30 of 31 days are credited, 2999 * 30 / 31 = 2902.26 -> 2902, so the
-- invoice is 28800 - 2902 = 25898, open. Canceled now on 3 Jan: the void
-- returned the 2902 credit line as credit until session 8; since review U1
-- (sql/27_review_money.sql) a cancel forfeits the unused paid time, upgrade
-- or not: credit 0. Refunding the whole 2999 on 4 Jan leaves 0 paid net and
-- nothing held: all 2999 is recorded against January's paid invoice
-- (refund_of_paid_invoice). (Before U1: the 2902 was taken back,
-- credit_refunded, and 97 recorded against January; before M8 the credit
-- stayed: 2902 created. The conservation bound's take-back of a returned
-- credit line is now held by U1 (c) in sql/27_review_money.sql, a void at
-- the grace end.)
SELECT id AS s FROM billing.subscribe('m8a', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-01-02') \gset
SELECT status, total_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT status FROM billing.cancel(:s, false, '2030-01-03');
SELECT billing.credit_balance('m8a') AS credit_after_void;
SELECT amount_cents FROM billing.refund(:p, 2999, '2030-01-04');
SELECT billing.credit_balance('m8a') AS credit_after_refund,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = 'm8a') AS payments_net;
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'm8a' ORDER BY id;
-- (b) M4's user: the enterprise invoice took the 2999 credit the paid March
-- came back as. Refunding that payment leaves 0 paid net: the credit comes
-- off the open invoice (refund_credit_from_invoice), which owes 99900 again;
-- a cancel then voids it and returns nothing.
SELECT p.id AS p FROM billing.payments p WHERE p.user_id = 'm4' \gset
SELECT id AS s FROM billing.subscriptions WHERE user_id = 'm4' AND ended_at IS NULL \gset
SELECT amount_cents FROM billing.refund(:p, 2999, '2030-03-02');
SELECT i.status, i.credit_applied_cents, i.amount_due_cents FROM billing.invoices i
 WHERE i.user_id = 'm4' AND i.status = 'open';
SELECT status FROM billing.cancel(:s, false, '2030-03-03');
SELECT billing.credit_balance('m4') AS credit,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = 'm4') AS payments_net;
-- (c) a customer's other credit is theirs: 5000 paid ahead sits in credit,
-- 2999 paid January; refunding the 2999 leaves 5000 paid net and 5000 held:
-- nothing is taken back.
SELECT id AS s FROM billing.subscribe('m8c', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT status FROM billing.record_payment(:s, 5000, 'usd', true, '2030-01-02');
SELECT amount_cents FROM billing.refund(:p, 2999, '2030-01-03');
SELECT billing.credit_balance('m8c') AS credit;

-- (d) a refund of money that paid a period through the credit balance. 5998
-- paid on 1 Jan: 2999 for January, 2999 to credit, which February's invoice
-- takes at the renewal (maintenance, 1 Feb). 4000 refunded at 01:00: no
-- credit left, nothing open; 2999 is recorded against February (the
-- payment's credit paid it, M13) and 1001 against January: 1998 paid net.
-- The upgrade on 2 Feb credits nothing of February: 28800; the cancel on
-- 3 Feb voids it and nothing comes back. (Before the lots were traced to
-- the invoices they paid, the upgrade credited 2892 and only the
-- conservation bound, billing::CreditForUnusedTime, held the void's return
-- to 1998.)
SELECT id AS s FROM billing.subscribe('m8d', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 5998, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT count(*) > 0 AS renewed FROM billing.run_maintenance('2030-02-01');
SELECT billing.credit_balance('m8d') AS credit_after_renewal;
SELECT amount_cents FROM billing.refund(:p, 4000, '2030-02-01 01:00');
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-02-02') \gset
SELECT total_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT status FROM billing.cancel(:s, false, '2030-02-03');
SELECT billing.credit_balance('m8d') AS credit_after_void,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = 'm8d') AS payments_net;
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('enterprise_monthly_m8', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd');
UPDATE billing.subscription_plans SET active = false WHERE code = 'enterprise_monthly_m8';

-- == M10: refunded time is not credited again by an upgrade. What a refund
-- does not take back from credit or open invoices is recorded against the
-- paid invoices its payment paid (refund_of_paid_invoice), and an upgrade
-- credits the period's price less that.
-- (a) January 2999 paid and refunded in full at 01:00; upgrade to pro_yearly
-- on 2 Jan: nothing of January is credited, the invoice is the full 28800
-- (before: 28800 - 2902, a discount for money already returned).
SELECT id AS s FROM billing.subscribe('m10a', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT amount_cents FROM billing.refund(:p, 2999, '2030-01-01 01:00');
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'm10a' ORDER BY id;
SELECT description, amount_cents FROM billing.preview_change(:s, 'pro_yearly', '2030-01-02');
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-01-02') \gset
SELECT total_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :s;
-- (b) the earlier period's money is no headroom: January paid and used,
-- February's 2999 paid (1 Feb 00:00:01) and refunded in full at 01:00,
-- upgraded on 2 Feb (nothing of February credited: 28800 due), canceled on
-- 3 Feb: the void returns nothing; credit 0, 2999 paid net for January.
SELECT id AS s FROM billing.subscribe('m10b', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-02-01 00:00:01');
SELECT max(id) AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT amount_cents FROM billing.refund(:p, 2999, '2030-02-01 01:00');
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-02-02') \gset
SELECT total_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT status FROM billing.cancel(:s, false, '2030-02-03');
SELECT billing.credit_balance('m10b') AS credit,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = 'm10b') AS payments_net;
-- (c) partly refunded: the second year's 28800 paid, 20000 of it refunded,
-- so 8800 paid for it. On 2 Jan 2031 the 9999 Enterprise monthly plan: 364
-- of 365 days unused, 8800 * 364 / 365 = 8775.89 -> 8776 credited; 9999 -
-- 8776 = 1223 due.
UPDATE billing.subscription_plans SET active = true WHERE code = 'enterprise_monthly_m8';
SELECT id AS s FROM billing.subscribe('m10c', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2031-01-01 00:00:01');
SELECT max(id) AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT amount_cents FROM billing.refund(:p, 20000, '2031-01-01 01:00');
SELECT id AS s FROM billing.change_plan(:s, 'enterprise_monthly_m8', '2031-01-02') \gset
SELECT total_cents, amount_due_cents, status FROM billing.invoices WHERE subscription_id = :s;
UPDATE billing.subscription_plans SET active = false WHERE code = 'enterprise_monthly_m8';

-- == M9: a plan's price is at most one payment's bound (10^11 minor units),
-- so the reports' sums cannot overflow; a Free-tier plan costs nothing.
\set VERBOSITY terse
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('huge', 'Huge', 'enterprise', 'monthly', 9223372036854775807, 'usd');
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('free_paid', 'Free but paid', 'free', 'monthly', 100, 'usd');
UPDATE billing.subscription_plans SET price_cents = 100000000001 WHERE code = 'pro_monthly';
SELECT pg_catalog.sum(price_cents) AS prices_unchanged FROM billing.subscription_plans;
\set VERBOSITY default

-- == M11: a refund takes back only its own payment's unspent credit, in
-- whatever order (attacker review R6). 5998 paid on 1 Jan: 2999 for
-- January, 2999 to credit, which February's renewal takes (maintenance on
-- 1 Feb). On 2 Feb a new payment of 5000 goes to credit and 2999 of the first
-- payment is refunded, in either order: its credit was spent (oldest credit
-- first), so the refund takes none of the 5000. Both customers: credit 5000.
SELECT id AS sx FROM billing.subscribe('m11x', 'pro_monthly', '2030-01-01', false) \gset
SELECT id AS sy FROM billing.subscribe('m11y', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:sx, 5998, 'usd', true, '2030-01-01');
SELECT status FROM billing.record_payment(:sy, 5998, 'usd', true, '2030-01-01');
SELECT id AS px FROM billing.payments WHERE subscription_id = :sx \gset
SELECT id AS py FROM billing.payments WHERE subscription_id = :sy \gset
SELECT count(*) > 0 AS renewed FROM billing.run_maintenance('2030-02-01 00:00:01');
SELECT amount_cents FROM billing.refund(:px, 2999, '2030-02-02 00:00');
SELECT status FROM billing.record_payment(:sx, 5000, 'usd', true, '2030-02-02 00:01');
SELECT status FROM billing.record_payment(:sy, 5000, 'usd', true, '2030-02-02 00:00');
SELECT amount_cents FROM billing.refund(:py, 2999, '2030-02-02 00:01');
SELECT u, billing.credit_balance(u) AS credit,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = u) AS payments_net
  FROM (VALUES ('m11x'), ('m11y')) v(u);

-- == M12: an open invoice without a due date (as a Stripe invoice is
-- mirrored) is not chased by the projection: effective_plan and
-- preview_change work (were XX000), and maintenance leaves it alone.
SELECT id AS s FROM billing.subscribe('m12', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency, period_start,
							  subtotal_cents, total_cents, amount_due_cents, issued_at)
VALUES ('M12-1', 'm12', :s, 'open', 'manual', 'usd', '2030-01-05', 500, 500, 500, '2030-01-05');
SELECT code FROM billing.effective_plan('m12', '2030-01-20');
SELECT count(*) AS lines FROM billing.preview_change(:s, 'pro_yearly', '2030-01-20');
SELECT status FROM billing.subscriptions WHERE id = :s;

-- == M13: a refund of a payment whose credit paid a later invoice is recorded
-- against that invoice (second attacker review F2). 2999 for January on
-- 1 Jan, 2999 more on 20 Jan into credit; February's renewal (maintenance,
-- 1 Feb) takes that credit. Refunding the second payment on 1 Feb 01:00 takes
-- no credit back (none left) and is recorded against February's invoice, so
-- the upgrade on 2 Feb credits nothing for February: 28800 (it credited 2892,
-- 27 of 28 days, before; in the other order, the refund before the renewal,
-- it was already 0).
SELECT id AS s FROM billing.subscribe('m13', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-20');
SELECT max(id) AS p FROM billing.payments WHERE user_id = 'm13' \gset
SELECT count(*) > 0 AS renewed FROM billing.run_maintenance('2030-02-01');
SELECT amount_cents FROM billing.refund(:p, 2999, '2030-02-01 01:00');
SELECT e.kind, e.amount_cents, i.period_start FROM billing.ledger_entries e JOIN billing.invoices i ON i.id = e.invoice_id
 WHERE e.user_id = 'm13' AND e.kind = 'refund_of_paid_invoice';
SELECT description, amount_cents FROM billing.preview_change(:s, 'pro_yearly', '2030-02-02');

-- == M14: a refund after an upgrade gives what it gives before it (attacker
-- review F3). (a) M8 d's customer, the refund after the upgrade: 5998 paid
-- on 1 Jan, February's renewal takes the 2999 credit, the upgrade on 2 Feb
-- credits 27 of 28 days, 2999 * 27 / 28 = 2891.8 -> 2892: 25908 due. Then
-- 4000 refunded: 2999 against February, 1001 against January, so February's
-- unused time is worth nothing now and the credit line comes off the open
-- upgrade invoice (refund_credit_line_from_invoice): 28800 due, as M8 d
-- (before: 25908 stayed due). A cancel voids it and returns nothing.
SELECT id AS s FROM billing.subscribe('m14a', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 5998, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT count(*) > 0 AS renewed FROM billing.run_maintenance('2030-02-01');
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-02-02') \gset
SELECT total_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT amount_cents FROM billing.refund(:p, 4000, '2030-02-02 01:00');
SELECT total_cents, subtotal_cents, amount_due_cents, lines -> 0 ->> 'amount_cents' AS credit_line
  FROM billing.invoices WHERE subscription_id = :s;
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'm14a' ORDER BY id;
SELECT status FROM billing.cancel(:s, false, '2030-02-03');
SELECT billing.credit_balance('m14a') AS credit_after_void,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = 'm14a') AS payments_net;
-- (b) part of the period refunded, in both orders. February's 2999 paid on
-- 1 Feb 00:00:01; 1000 of it refunded, before the upgrade on 2 Feb (user
-- m14b) or after it (m14c): 1999 * 27 / 28 = 1927.6 -> 1928 credited either
-- way, 28800 - 1928 = 26872 due (after: the line comes down from 2892 by 964).
SELECT id AS sb FROM billing.subscribe('m14b', 'pro_monthly', '2030-01-01', false) \gset
SELECT id AS sc FROM billing.subscribe('m14c', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:sb, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.record_payment(:sc, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.record_payment(:sb, 2999, 'usd', true, '2030-02-01 00:00:01');
SELECT status FROM billing.record_payment(:sc, 2999, 'usd', true, '2030-02-01 00:00:01');
SELECT max(id) AS pb FROM billing.payments WHERE subscription_id = :sb \gset
SELECT max(id) AS pc FROM billing.payments WHERE subscription_id = :sc \gset
SELECT amount_cents FROM billing.refund(:pb, 1000, '2030-02-01 01:00');
SELECT id AS sb FROM billing.change_plan(:sb, 'pro_yearly', '2030-02-02') \gset
SELECT id AS sc FROM billing.change_plan(:sc, 'pro_yearly', '2030-02-02') \gset
SELECT amount_cents FROM billing.refund(:pc, 1000, '2030-02-02 01:00');
SELECT i.user_id, i.total_cents, i.amount_due_cents, i.lines -> 0 ->> 'amount_cents' AS credit_line
  FROM billing.invoices i WHERE i.subscription_id IN (:sb, :sc) ORDER BY i.user_id;
-- (c) an upgrade invoice already paid keeps its credit (nothing is open to
-- owe it again): the refund is recorded against February, as in M10.
SELECT id AS s FROM billing.subscribe('m14d', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-02-01 00:00:01');
SELECT max(id) AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-02-02') \gset
SELECT status FROM billing.record_payment(:s, 25908, 'usd', true, '2030-02-02 00:30');
SELECT amount_cents FROM billing.refund(:p, 2999, '2030-02-02 01:00');
SELECT status, total_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'm14d' AND kind LIKE 'refund%' ORDER BY id;

-- == M15: an upgrade after a pause credits the unused paid time (attacker
-- review R5). January paid (2999), paused 2 Jan to 1 Nov (303 days): the
-- resume moves the period end to 1 Dec. Upgraded at once, 30 of the 31 paid
-- days are unused: 2999 * 30 / 31 = 2902.26 -> 2902 (it was prorated over
-- the 334 days including the pause: 269). (b) Within the same interval, the
-- period kept starts where the proration starts it, 31 Oct, so a later
-- upgrade prorates 31 days too: Enterprise monthly 9999 on 1 Nov, 30 of 31
-- days: 9999 * 30 / 31 = 9676.45 -> 9676, less 2902: 6774 due, paid; on
-- 15 Nov to Enterprise yearly: 16 of 31 days unused, 9999 * 16 / 31 =
-- 5160.77 -> 5161 credited (not 9999 * 16 / 334 = 479).
SELECT id AS s FROM billing.subscribe('m15a', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.pause(:s, '2030-01-02');
SELECT status, current_period_end FROM billing.resume(:s, '2030-11-01');
SELECT description, amount_cents FROM billing.preview_change(:s, 'pro_yearly', '2030-11-01');
SELECT id AS s FROM billing.change_plan(:s, 'pro_yearly', '2030-11-01') \gset
SELECT total_cents FROM billing.invoices WHERE subscription_id = :s;
UPDATE billing.subscription_plans SET active = true WHERE code = 'enterprise_monthly_m8';
SELECT id AS s FROM billing.subscribe('m15b', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.pause(:s, '2030-01-02');
SELECT status FROM billing.resume(:s, '2030-11-01');
SELECT id AS s FROM billing.change_plan(:s, 'enterprise_monthly_m8', '2030-11-01') \gset
SELECT current_period_start, current_period_end FROM billing.subscriptions WHERE id = :s;
SELECT total_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT status FROM billing.record_payment(:s, 6774, 'usd', true, '2030-11-01 00:10');
SELECT description, amount_cents FROM billing.preview_change(:s, 'enterprise_yearly', '2030-11-15');
UPDATE billing.subscription_plans SET active = false WHERE code = 'enterprise_monthly_m8';
-- (c) with a refund after the upgrade (review of M14 and M15 together):
-- m15a's January payment, 1 cent refunded after the upgrade: the line is
-- what a refund first gives over the same 31 paid days, 2998 * 30 / 31 =
-- 2901.35 -> 2901, so 1 comes off (it was prorated over the 334 days: 2633).
SELECT p.id AS p FROM billing.payments p WHERE p.user_id = 'm15a' \gset
SELECT amount_cents FROM billing.refund(:p, 1, '2030-11-01 01:00');
SELECT i.total_cents, i.lines -> 0 ->> 'amount_cents' AS credit_line
  FROM billing.invoices i WHERE i.user_id = 'm15a' AND i.status = 'open';
-- (d) a subscription paused when its history was backfilled (the update
-- from 0.2.0) has a paused interval dated from its start: the pause counts
-- from paused_at. Paid 1 Jan, paused 20 Jan, history backfilled, resumed
-- 30 Jan (period end 11 Feb); on 31 Jan 11 of the 31 paid days are unused:
-- 2999 * 11 / 31 = 1064.2 -> 1064 (2749 counting the pause from 1 Jan).
SELECT id AS s FROM billing.subscribe('m15d', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.pause(:s, '2030-01-20');
DELETE FROM billing.subscription_history WHERE user_id = 'm15d';
SELECT billing._history_backfill() > 0 AS backfilled;
SELECT status, valid_from, paused_at FROM billing.subscription_history WHERE user_id = 'm15d';
SELECT status, current_period_end FROM billing.resume(:s, '2030-01-30');
SELECT description, amount_cents FROM billing.preview_change(:s, 'pro_yearly', '2030-01-31');

-- == M16: an upgrade invoice its own credit line settled (the credit beyond
-- the charge went to the credit balance) is owed again when the period it
-- credited is refunded after the upgrade, as a refund first gives (review
-- of M14). pro_yearly 28800 paid 1 Jan; on 1 Feb Enterprise monthly 9999:
-- 334 of 365 days unused, 28800 * 334 / 365 = 26353.97 -> 26354 credited,
-- total -16355: paid at once, 16355 to credit. The whole 28800 refunded on
-- 1 Feb 01:00: the 16355 credit comes back (the conservation bound) and the
-- line comes down to 0: the invoice owes 9999, open again; credit 0, paid
-- net 0. (Before: a paid Enterprise month for nothing.)
UPDATE billing.subscription_plans SET active = true WHERE code = 'enterprise_monthly_m8';
SELECT id AS s FROM billing.subscribe('m16', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE subscription_id = :s \gset
SELECT id AS s FROM billing.change_plan(:s, 'enterprise_monthly_m8', '2030-02-01') \gset
SELECT status, total_cents, amount_due_cents FROM billing.invoices WHERE subscription_id = :s;
SELECT billing.credit_balance('m16') AS credit_before_refund;
SELECT amount_cents FROM billing.refund(:p, 28800, '2030-02-01 01:00');
SELECT status, total_cents, amount_due_cents, paid_at, lines -> 0 ->> 'amount_cents' AS credit_line
  FROM billing.invoices WHERE subscription_id = :s;
SELECT billing.credit_balance('m16') AS credit,
	   (SELECT sum(amount_cents) FROM billing.payments WHERE user_id = 'm16') AS payments_net;
UPDATE billing.subscription_plans SET active = false WHERE code = 'enterprise_monthly_m8';
