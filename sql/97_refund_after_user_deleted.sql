-- Attack (session 9 review 3, hostile tester): D1's fix takes a deleted
-- user's credit balance off the id as credit_to_deleted_user, "owed to the
-- deleted customer", for a DBA to pay out of band. A refund of the deleted
-- customer's payment afterwards (support refunding a closed account: the
-- rename refusal's own HINT says "refund the credit") still pays the whole
-- payment back in cash, 8999 here, but records only the 2999 that paid the
-- invoice: the 6000 the payment had put into credit leaves as cash AND
-- stays on the ledger as owed to the customer. A DBA following the README
-- (SELECT ... WHERE kind = 'credit_to_deleted_user') pays the 6000 a second
-- time. Every cent of a refund is accounted when the user is not deleted
-- (credit_refunded 6000 + refund_of_paid_invoice 2999).
-- SAFE outcome (this expected file): the entries naming the refund add up to
-- the refund (8999: the 6000 taken back from what was owed to the deleted
-- customer), nothing stays owed beyond the cash returned, and the next owner
-- of the id starts at 0. (A refund limited to what it can take back would
-- be safe too; this file pins the first.)
-- Fixed (billing::TakeBackForRefund's payment_owed, CreditOf's owed): the
-- refund's credit part comes off what is owed to the deleted customer, as a
-- deleted_user_credit_refunded entry; what is owed is credit_to_deleted_user
-- less those entries. (The review's last query added the payments' net to the
-- credit_to_deleted_user sum, which positive-only entries can never bring
-- to 0; it now subtracts what refunds took of it.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS d1_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA d1_app;
CREATE TABLE d1_app.users (id text PRIMARY KEY);
SELECT billing.attach_users('d1_app.users', 'id');
INSERT INTO d1_app.users VALUES ('dana');
SELECT status FROM billing.subscribe('dana', 'pro_monthly', with_trial => false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'dana' AND ended_at IS NULL),
	8999, 'usd', true);
SELECT billing.credit_balance('dana') AS credit_before;
DELETE FROM d1_app.users WHERE id = 'dana';
SELECT billing.credit_balance('dana') AS credit_after_delete;
SELECT amount_cents FROM billing.refund((SELECT id FROM billing.payments WHERE user_id = 'dana' AND refund_of IS NULL), 8999);
-- every cent of the refund accounted by the ledger
SELECT -r.amount_cents AS refunded, (SELECT COALESCE(sum(e.amount_cents), 0) FROM billing.ledger_entries e WHERE e.payment_id = r.id) AS accounted
  FROM billing.payments r WHERE r.user_id = 'dana' AND r.refund_of IS NOT NULL;
SELECT e.kind, e.amount_cents FROM billing.ledger_entries e JOIN billing.payments r ON r.id = e.payment_id
 WHERE r.user_id = 'dana' AND r.refund_of IS NOT NULL ORDER BY e.kind;
-- what the ledger still says is owed to the deleted customer, less what refunds paid of it
SELECT COALESCE(sum(amount_cents) FILTER (WHERE kind = 'credit_to_deleted_user'), 0)
     - COALESCE(sum(amount_cents) FILTER (WHERE kind = 'deleted_user_credit_refunded'), 0) AS owed_beyond_cash_returned
  FROM billing.ledger_entries WHERE user_id = 'dana';
-- a second refund finds nothing left (the whole payment is refunded)
SELECT amount_cents FROM billing.refund((SELECT id FROM billing.payments WHERE user_id = 'dana' AND refund_of IS NULL), 1);
-- a partial refund of a second deleted user's payment: 4000 of the 6000 owed, the rest still owed
INSERT INTO d1_app.users VALUES ('erin');
SELECT status FROM billing.subscribe('erin', 'pro_monthly', with_trial => false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'erin' AND ended_at IS NULL),
	8999, 'usd', true);
DELETE FROM d1_app.users WHERE id = 'erin';
SELECT amount_cents FROM billing.refund((SELECT id FROM billing.payments WHERE user_id = 'erin' AND refund_of IS NULL), 4000);
SELECT e.kind, e.amount_cents FROM billing.ledger_entries e JOIN billing.payments r ON r.id = e.payment_id
 WHERE r.user_id = 'erin' AND r.refund_of IS NOT NULL ORDER BY e.kind;
SELECT COALESCE(sum(amount_cents) FILTER (WHERE kind = 'credit_to_deleted_user'), 0)
     - COALESCE(sum(amount_cents) FILTER (WHERE kind = 'deleted_user_credit_refunded'), 0) AS erin_still_owed
  FROM billing.ledger_entries WHERE user_id = 'erin';
-- the rest: 2000 more of what is owed, then 2999 against the paid invoice
SELECT amount_cents FROM billing.refund((SELECT id FROM billing.payments WHERE user_id = 'erin' AND refund_of IS NULL), 4999);
SELECT e.kind, sum(e.amount_cents) FROM billing.ledger_entries e JOIN billing.payments r ON r.id = e.payment_id
 WHERE r.user_id = 'erin' AND r.refund_of IS NOT NULL GROUP BY e.kind ORDER BY e.kind;
SELECT COALESCE(sum(amount_cents) FILTER (WHERE kind = 'credit_to_deleted_user'), 0)
     - COALESCE(sum(amount_cents) FILTER (WHERE kind = 'deleted_user_credit_refunded'), 0) AS erin_still_owed,
       billing.credit_balance('erin') AS erin_balance
  FROM billing.ledger_entries WHERE user_id = 'erin';
INSERT INTO d1_app.users VALUES ('dana');
SELECT billing.credit_balance('dana') AS next_owner_credit;
SET client_min_messages = warning;
DROP SCHEMA d1_app CASCADE;
RESET client_min_messages;
