-- L2 (session 10, found by the model test, seed 101 at 5,000 steps, and cut
-- down by hand): one refund that takes credit back off an open upgrade
-- invoice (conservation: refund_credit_from_invoice) and also takes that
-- invoice's credit line back (the refunded period: refund_credit_line_from_invoice)
-- left the invoice's amounts not adding up: the line's update wrote the
-- amount due read before the credit came off, so the customer owed 25801
-- less than the invoice's total minus what paid it.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
-- pro_monthly from 1 Jan 2030 (invoice 2999); 50000 paid: 2999 on the
-- invoice, 47001 credit
SELECT status FROM billing.subscribe('l2', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'l2' AND ended_at IS NULL),
										  50000, 'usd', true, '2030-01-01 00:10');
-- upgrade to enterprise_yearly on 16 Jan: the line credits 16 of January's
-- 31 days, 2999 x 16 / 31 = 1547.87 -> 1548; a new yearly period at 99900:
-- total 98352, the credit 47001 applied, 51351 due
SELECT status FROM billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = 'l2' AND ended_at IS NULL),
									   'enterprise_yearly', '2030-01-16');
SELECT total_cents, amount_paid_cents, credit_applied_cents, amount_due_cents, status
  FROM billing.invoices WHERE user_id = 'l2' AND billing_reason = 'subscription_update';
-- 28800 of the 50000 refunded on 20 Jan: the customer then paid 21200 net
-- and must hold no more, so 25801 of the credit comes off the open invoice
-- (47001 - 21200); the other 2999 is what paid January, refunded of it, so
-- the line comes down to 0 (1548 owed again). The invoice: total 99900,
-- credit 21200, nothing paid, 78700 due (99900 - 21200). Before the fix:
-- 52899 due (51351 + 1548), 25801 short.
SELECT amount_cents FROM billing.refund((SELECT id FROM billing.payments WHERE user_id = 'l2'), 28800, '2030-01-20');
SELECT total_cents, amount_paid_cents, credit_applied_cents, amount_due_cents, status,
	   amount_paid_cents + credit_applied_cents + amount_due_cents = total_cents AS adds_up
  FROM billing.invoices WHERE user_id = 'l2' AND billing_reason = 'subscription_update';
SELECT kind, amount_cents FROM billing.ledger_entries WHERE user_id = 'l2' ORDER BY id;
SELECT billing.credit_balance('l2');
-- paying what is due settles it: the subscription stays active, nothing left
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'l2' AND ended_at IS NULL),
										  78700, 'usd', true, '2030-01-21');
SELECT status, amount_due_cents FROM billing.invoices WHERE user_id = 'l2' AND billing_reason = 'subscription_update';
SELECT billing.credit_balance('l2');
