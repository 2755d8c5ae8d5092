-- Session 9: the money findings of the second session-8 review left open
-- (test/review/MONEY_FINDINGS2.md, "Status after s8-mfix2" and "after the
-- lead's merge"): the R3 variant, R4 and D1, moved here from
-- test/review/money2_open.sql (now removed: nothing left open). Each case holds the outcome a
-- billing user expects, with the hand arithmetic; "Before:" says what the
-- code gave. Times UTC.
SET client_min_messages = warning;  -- the extension may or may not exist: no NOTICE either way
DROP EXTENSION IF EXISTS billing CASCADE;
DROP TABLE IF EXISTS public.review3_users;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse

-- == R3 variant (session 9): 20000 on 10 Feb, then 8800 on 13 Feb. After the
-- first refund: the conservation bound takes 7555 of the 16355 credit, 12445
-- is recorded against the paid year, the line comes down to 8800 x 334 / 365
-- = 8053 (total 1946, reopened) and the rest of its balance part (8800)
-- leaves: credit 0, 1946 owed, as a 20000 refund first gives. The bound's
-- 7555 came off what the line had put into the balance: it was refunded of
-- the year too, and is recorded against it (a credit_refunded entry naming
-- the year's invoice), so the second refund finds 28800 refunded of the year
-- and takes the line to 0. Expected (as one 28800 refund): 9999 owed, credit
-- 0. (Before: 3086 owed; the second refund found only 12445 recorded against
-- the year and took the line to (28800 - 12445 - 8800) x 334 / 365 = 6913.)
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features)
VALUES ('ent_monthly_r3v', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 30, '{}', '{}');
SELECT id AS s FROM billing.subscribe('r3v', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE user_id = 'r3v' \gset
SELECT id AS s FROM billing.change_plan(:s, 'ent_monthly_r3v', '2030-02-01') \gset
SELECT amount_cents FROM billing.refund(:p, 20000, '2030-02-10');
SELECT status, total_cents, amount_due_cents, billing.credit_balance('r3v') AS credit
  FROM billing.invoices WHERE subscription_id = :s;  -- 1946 owed, credit 0
SELECT amount_cents FROM billing.refund(:p, 8800, '2030-02-13');
SELECT status, total_cents, amount_due_cents, to_char(due_at, 'YYYY-MM-DD') AS due, billing.credit_balance('r3v') AS credit
  FROM billing.invoices WHERE subscription_id = :s;  -- 9999 owed, due 13 Feb (reopened on 10 Feb), credit 0
-- what each refund recorded against the paid year (the bound's take included): 20000, then 8800
SELECT -r.amount_cents AS refund, sum(e.amount_cents) AS recorded_against_the_year
  FROM billing.payments r JOIN billing.ledger_entries e ON e.payment_id = r.id
  JOIN billing.invoices i ON i.id = e.invoice_id AND i.billing_reason = 'subscription_create'
 WHERE r.user_id = 'r3v' AND r.refund_of IS NOT NULL GROUP BY r.id ORDER BY r.id;

-- == R4 (Medium, session 9): R2 again through a refund dated back.
-- pro_yearly 28800 paid 1 Jan 2030; 1 Feb Enterprise monthly 9999 (line
-- 26354, total -16355, paid, credit 16355); maintenance to 25 Feb;
-- plan_distribution of 20 Feb: 1 Enterprise user. Then 28800 refunded, dated
-- 2 Feb: the upgrade invoice reopens for 9999. Maintenance had already run to
-- 25 Feb, so it falls due three days after that (28 Feb), not after the
-- refund's 2 Feb (README "A reopened invoice is due three days after the
-- refund"); the next maintenance (26 Feb) finds nothing due. Expected: not
-- expired before 25 Feb, Enterprise on 20 Feb, plan_distribution of 20 Feb
-- still 1 Enterprise user. (Before: due 5 Feb, past_due since 5 Feb, expired
-- 19 Feb, a week before the refund was recorded: Free and 0 Enterprise users
-- on 20 Feb.) The money is R2's: 9999 owed, credit 0.
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features)
VALUES ('ent_monthly_r4', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 30, '{}', '{}');
SELECT id AS s FROM billing.subscribe('r4', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE user_id = 'r4' \gset
SELECT id AS s FROM billing.change_plan(:s, 'ent_monthly_r4', '2030-02-01') \gset
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2030-02-25');
SELECT to_char(max(ran_to), 'YYYY-MM-DD') AS maintenance_ran_to FROM billing.maintenance_runs;
SELECT (billing.effective_plan('r4', '2030-02-20')).code AS r4_feb20_before,
       (SELECT users FROM billing.plan_distribution('2030-02-20') WHERE plan_code = 'ent_monthly_r4') AS enterprise_users_feb20_before;
SELECT amount_cents FROM billing.refund(:p, 28800, '2030-02-02');
SELECT status, total_cents, amount_due_cents, to_char(due_at, 'YYYY-MM-DD') AS due, billing.credit_balance('r4') AS credit
  FROM billing.invoices WHERE subscription_id = :s;  -- open 9999, due 28 Feb, credit 0
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2030-02-26');
SELECT count(*) AS r4_expired_before_the_refund_was_recorded FROM billing.subscriptions
 WHERE id = :s AND ended_at < '2030-02-25';
SELECT (billing.effective_plan('r4', '2030-02-20')).code AS r4_feb20_after,
       (SELECT users FROM billing.plan_distribution('2030-02-20') WHERE plan_code = 'ent_monthly_r4') AS enterprise_users_feb20_after;
-- unpaid, dunning starts at the due date after maintenance's 25 Feb: past_due
-- on 1 Mar (since 28 Feb), Enterprise through the grace
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2030-03-01');
SELECT status, to_char(past_due_since, 'YYYY-MM-DD') AS past_due_since FROM billing.subscriptions WHERE id = :s;


CREATE TABLE public.review3_users (id text PRIMARY KEY);
SELECT billing.attach_users('public.review3_users', 'id');

-- == D1 (Medium, session 9): a deleted user's credit passed to whoever took
-- the id. d1 pays 7999 for pro_monthly (2999 invoice, 5000 credit), is
-- deleted (canceled now, finding 67); a new d1 registers and subscribes to
-- pro_monthly. Expected: the 5000 leaves the id with the deleted customer
-- (a credit_to_deleted_user ledger entry, owed to them: a DBA finds it
-- there), the new d1 starts with credit 0 and owes 2999 (incomplete).
-- (Before: credit 5000, active, the 2999 paid from the previous owner's
-- money.) d1b: the same with the paid plan canceled before the DELETE (back
-- on Free, nothing for the DELETE to cancel): its 5000 leaves too.
INSERT INTO public.review3_users VALUES ('d1');
SELECT (billing.subscribe('d1', 'pro_monthly', with_trial => false)).id AS s \gset
SELECT status FROM billing.record_payment(:s, 7999, 'usd', true);
SELECT billing.credit_balance('d1') AS old_owner_credit;
DELETE FROM public.review3_users WHERE id = 'd1';
SELECT billing.credit_balance('d1') AS credit_after_delete;
SELECT user_id, kind, amount_cents, payment_id IS NULL AND invoice_id IS NULL AS names_nothing
  FROM billing.ledger_entries WHERE kind = 'credit_to_deleted_user' AND user_id = 'd1';
INSERT INTO public.review3_users VALUES ('d1');
SELECT billing.credit_balance('d1') AS new_owner_credit;
SELECT (billing.subscribe('d1', 'pro_monthly', with_trial => false)).status AS new_owner_subscription;
INSERT INTO public.review3_users VALUES ('d1b');
SELECT (billing.subscribe('d1b', 'pro_monthly', with_trial => false)).id AS s \gset
SELECT status FROM billing.record_payment(:s, 7999, 'usd', true);
SELECT status FROM billing.cancel(:s, false);
SELECT billing.credit_balance('d1b') AS d1b_credit_on_free;
DELETE FROM public.review3_users WHERE id = 'd1b';
SELECT billing.credit_balance('d1b') AS d1b_credit_after_delete,
       (SELECT sum(amount_cents) FROM billing.ledger_entries WHERE kind = 'credit_to_deleted_user' AND user_id = 'd1b') AS owed_to_the_deleted_d1b;

SET client_min_messages = warning;
SELECT billing.detach('public.review3_users');
DROP TABLE public.review3_users;
RESET client_min_messages;
