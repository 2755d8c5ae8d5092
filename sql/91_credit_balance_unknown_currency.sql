-- README walk (session 9, independent tester), finding W4.
-- README, Errors: 22023 for "bad arguments: ... unknown or mismatched
-- currency" (SPEC §7: "unknown currency"). record_payment refuses 'xyz' with
-- 22023 ("unknown currency"), but billing.credit_balance(user_id, currency)
-- answers 0 for any string, 'xyz' and '' included, so a typo reads as "no
-- credit" instead of an error.
-- SAFE outcome (this expected file): 22023 for 'xyz' and '', the balance for
-- 'usd' and (SPEC: "lower or upper case consistently") 'USD'.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
SELECT status FROM billing.subscribe('cb1', 'pro_monthly', '2026-01-01', with_trial => false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'cb1' AND ended_at IS NULL),
	3999, 'usd', true, '2026-01-01 01:00');
SELECT billing.credit_balance('cb1', 'usd') AS usd, billing.credit_balance('cb1', 'USD') AS upper_usd;
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'cb1' AND ended_at IS NULL),
	1, 'xyz', true, '2026-01-02');
SELECT billing.credit_balance('cb1', 'xyz');
SELECT billing.credit_balance('cb1', '');
