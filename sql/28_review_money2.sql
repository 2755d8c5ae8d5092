-- Session 8 money review, second pass (after today's fixes R1, R2, U1, T1,
-- V1, L1 and the deleted-user cancel): each case with its hand arithmetic and
-- the outcome a billing user expects. The expected file holds that outcome,
-- not what the code does today. Times UTC. test/review/MONEY_FINDINGS2.md.
SET client_min_messages = warning;  -- the extension may or may not exist: no NOTICE either way
DROP EXTENSION IF EXISTS billing CASCADE;
DROP TABLE IF EXISTS public.review2_users;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse

-- == C1 (Medium): U1's rule ("a cancel forfeits the unused time of a paid
-- period ... whether or not an upgrade nobody paid for came between", README:
-- "Except when the subscription was canceled (now, or at its period end)")
-- holds for cancel now only. pro_yearly 28800 paid 1 Jan 2030; 2 Jan
-- change_plan to enterprise_yearly: 364 of 365 days unused, 28800 * 364 / 365
-- = 28721.1 -> credit line 28721; yearly to yearly keeps the period, so the
-- charge is 99900 * 364 / 365 = 99626.3 -> 99626, total 99626 - 28721 =
-- 70905, open, due 5 Jan.
--   c1a: cancel now 1 s later: void, credit 0 (U1, fixed).
--   c1b: cancel at period end 1 s later; nobody pays: past_due 5 Jan, grace
--        ends 19 Jan: expired, the upgrade invoice void. The subscription was
--        canceled at its period end, so by the README its void gives no
--        credit lines back: credit 0, as c1a. (Today: void_reason
--        payment_failed, the 28721 line comes back as credit: cancel at
--        period end after an unpaid upgrade turns the paid year into 28721 of
--        credit plus 17 days of Enterprise nobody paid for; cancel now gives 0.)
SELECT id AS s FROM billing.subscribe('c1a', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT id AS s FROM billing.change_plan(:s, 'enterprise_yearly', '2030-01-02') \gset
SELECT total_cents, status FROM billing.invoices WHERE subscription_id = :s;
SELECT status FROM billing.cancel(:s, false, '2030-01-02 00:00:01');
SELECT id AS s FROM billing.subscribe('c1b', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT id AS s FROM billing.change_plan(:s, 'enterprise_yearly', '2030-01-02') \gset
SELECT status, cancel_at_period_end FROM billing.cancel(:s, true, '2030-01-02 00:00:01');
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2030-02-01');
SELECT user_id, status FROM billing.invoices WHERE user_id IN ('c1a', 'c1b') AND total_cents = 70905 ORDER BY user_id;
SELECT billing.credit_balance('c1a') AS c1a_credit, billing.credit_balance('c1b') AS c1b_credit;

-- == H1 (Medium): effective_plan of a past date changes once the
-- subscription that was current then has ended (SPEC: "effective_plan, quota
-- and has_feature are exact for any at, whether or not maintenance has run
-- since"). pro_monthly subscribed and paid 2999 on 1 Jan 2030: Pro from 1 Jan
-- to 1 Feb. Nothing else paid: renewal 1 Feb (due 4 Feb), past_due, grace
-- ends 18 Feb: expired, Free. On 5 Jan the user had Pro, before and after the
-- maintenance that expired the subscription. (Today: Pro before, Free after:
-- the ended subscription is judged as finally stored, period 1 Feb - 1 Mar,
-- status expired, not as it was on 5 Jan; also for a trial converted from
-- credit at its end, T1, and any subscription that ends.)
SELECT id AS s FROM billing.subscribe('h1', 'pro_monthly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 2999, 'usd', true, '2030-01-01');
SELECT (billing.effective_plan('h1', '2030-01-05')).code AS h1_jan5_before;
SELECT count(*) > 0 AS maintained FROM billing.run_maintenance('2030-03-10');
SELECT status, end_reason FROM billing.subscriptions WHERE id = :s;
SELECT (billing.effective_plan('h1', '2030-01-05')).code AS h1_jan5_after;

-- == R3 (High): a refund split in two gives the customer 8374 of Enterprise
-- that one refund of the same total charges. As 27_review_money R1/R2:
-- pro_yearly 28800 paid 1 Jan 2030; 1 Feb change_plan to an Enterprise
-- monthly 9999 plan: 334 of 365 days unused, 28800 * 334 / 365 = 26353.97 ->
-- credit line 26354, total 9999 - 26354 = -16355, paid, credit 16355.
--   r3a: the whole 28800 refunded on 12 Feb in one refund: nothing paid net,
--        the line goes (26354 taken back), the upgrade invoice owes 9999,
--        due 15 Feb (R2), credit 0. (Right today.) Since session 9 (R4) due
--        13 Mar: H1 above ran maintenance to 10 Mar before these refunds
--        dated 12 Feb were recorded, and a reopened invoice falls due three
--        days after the later of the refund and how far maintenance has run.
--   r3b: the same 28800 refunded in two refunds at the same instant, 10000
--        then 18800: the same end state, 9999 owed, credit 0. (Today: 1625
--        owed: the second refund takes back 16355 of credit (credit_refunded)
--        and only 8829 of the line, which keeps 8374 although nothing is paid
--        net; and after the first refund alone the customer still held 16355
--        of credit, the invoice saying -7204.)
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features)
VALUES ('ent_monthly_r2', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 30, '{}', '{}');
SELECT id AS s FROM billing.subscribe('r3a', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE user_id = 'r3a' \gset
SELECT id AS s FROM billing.change_plan(:s, 'ent_monthly_r2', '2030-02-01') \gset
SELECT amount_cents FROM billing.refund(:p, 28800, '2030-02-12');
SELECT id AS s FROM billing.subscribe('r3b', 'pro_yearly', '2030-01-01', false) \gset
SELECT status FROM billing.record_payment(:s, 28800, 'usd', true, '2030-01-01');
SELECT id AS p FROM billing.payments WHERE user_id = 'r3b' \gset
SELECT id AS s FROM billing.change_plan(:s, 'ent_monthly_r2', '2030-02-01') \gset
SELECT amount_cents FROM billing.refund(:p, 10000, '2030-02-12');
SELECT amount_cents FROM billing.refund(:p, 18800, '2030-02-12');
SELECT i.user_id, i.status, i.total_cents, i.amount_due_cents, to_char(i.due_at, 'YYYY-MM-DD') AS due,
       billing.credit_balance(i.user_id) AS credit
  FROM billing.invoices i JOIN billing.subscription_plans p ON p.code = 'ent_monthly_r2'
  JOIN billing.subscriptions s ON s.id = i.subscription_id AND s.plan_id = p.id
 WHERE i.user_id IN ('r3a', 'r3b') ORDER BY i.user_id;
SELECT user_id, sum(amount_cents) AS paid_net FROM billing.payments WHERE user_id IN ('r3a', 'r3b') GROUP BY user_id ORDER BY user_id;

-- The users table for D2 (D1, a deleted user's credit passing to whoever
-- takes the id: sql/29_review_money_open.sql).
CREATE TABLE public.review2_users (id text PRIMARY KEY);
SELECT billing.attach_users('public.review2_users', 'id');

-- == D2 (Low): deleting a user whose subscription holds a change dated after
-- now() (a payment recorded with a future at, which record_payment accepts)
-- fails: the trigger's cancel at now() is refused 22023 ("before the latest
-- change"), so the application cannot delete its own user. Expected: the
-- DELETE succeeds and the subscription ends (at its latest change at the
-- earliest). (Today: ERROR, the row stays.)
INSERT INTO public.review2_users VALUES ('d2');
SELECT (billing.subscribe('d2', 'pro_monthly', with_trial => false)).id AS s \gset
SELECT status FROM billing.record_payment(:s, 1000, 'usd', true, pg_catalog.now() + interval '1 hour');
DELETE FROM public.review2_users WHERE id = 'd2';
SELECT count(*) AS d2_rows_left FROM public.review2_users WHERE id = 'd2';
SELECT count(*) AS d2_current_paid_subscriptions FROM billing.subscriptions
 WHERE user_id = 'd2' AND ended_at IS NULL AND price_cents > 0;

SET client_min_messages = warning;
SELECT billing.detach('public.review2_users');
DROP TABLE public.review2_users;
RESET client_min_messages;
