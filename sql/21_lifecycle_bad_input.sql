-- Each class of bad input to the lifecycle functions: a clear error with the
-- SPEC's SQLSTATE, and nothing changed.
-- a fresh install, so counts and ids do not depend on earlier tests
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
SELECT id AS sub FROM billing.subscribe('bad-input', 'pro_monthly', '2026-01-01 00:00+00', with_trial => false) \gset
SELECT count(*) AS rows_before FROM billing.subscriptions \gset
SELECT count(*) AS payments_before FROM billing.payments \gset

-- unknown plan code
SELECT billing.subscribe('someone', 'platinum', '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.change_plan(:sub, 'platinum', '2026-01-02 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- empty user id
SELECT billing.subscribe('', 'pro_monthly', '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- NULL arguments
SELECT billing.subscribe(NULL, 'pro_monthly', '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.cancel(:sub, true, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.record_payment(:sub, NULL, 'usd', true, '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- infinite time
SELECT billing.cancel(:sub, true, 'infinity');
\echo :LAST_ERROR_SQLSTATE
-- finite times outside the years 0001 to 9999 (UTC): 22008, for every function
-- that takes one, and the first and last microsecond just outside them
SELECT billing.start_trial('someone', 'pro_monthly', at => '0044-03-15 BC');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.subscribe('someone', 'pro_monthly', '294276-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.cancel(:sub, true, '0001-12-31 23:59:59.999999+00 BC');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.cancel(:sub, true, '0001-01-01 00:30+01');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.record_payment(:sub, 2999, 'usd', true, '10000-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.change_plan(:sub, 'pro_yearly', '294276-12-31 23:59:59+00');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.preview_change(:sub, 'pro_yearly', '4713-01-01 00:00+00 BC');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.reactivate(:sub, '20000-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.pause(:sub, '20000-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.resume(:sub, '20000-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.refund(1, 100, '20000-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.run_maintenance('294276-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.stripe_ingest('{}', 't=1', '294276-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- negative amount
SELECT billing.record_payment(:sub, -1, 'usd', true, '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- unknown currency, and one that is not the subscription's
SELECT billing.record_payment(:sub, 2999, 'usx', true, '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.record_payment(:sub, 2999, 'EUR', true, '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- unknown subscription and payment
SELECT billing.cancel(-1, true, '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.refund(-1, 100, '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.refund(1, 0, '2026-01-01 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- time before the subscription started
SELECT billing.cancel(:sub, false, '2025-12-31 00:00+00');
\echo :LAST_ERROR_SQLSTATE
-- bad batch size
SELECT * FROM billing.run_maintenance('2026-01-01 00:00+00', 0);
\echo :LAST_ERROR_SQLSTATE
-- changing to the plan it is already on
SELECT billing.change_plan(:sub, 'pro_monthly', '2026-01-02 00:00+00');
\echo :LAST_ERROR_SQLSTATE

-- a NULL where the schema promises a value (a damaged table) is an internal
-- error naming the column, never a crash or a made-up value
BEGIN;
ALTER TABLE billing.subscriptions ALTER COLUMN current_period_start DROP NOT NULL;
UPDATE billing.subscriptions SET current_period_start = NULL WHERE id = :sub;
SELECT billing.cancel(:sub, true, '2026-01-02 00:00+00');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
ALTER TABLE billing.subscriptions ALTER COLUMN currency DROP NOT NULL;
UPDATE billing.subscriptions SET currency = NULL WHERE id = :sub;
SELECT billing.cancel(:sub, true, '2026-01-02 00:00+00');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- keys of unique indexes have a bounded length: 22023, not 54000 from the index
SELECT billing.subscribe(repeat('u', 256), 'free', '2026-01-02 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.start_trial(repeat('u', 1000000), 'pro_monthly', '2026-01-02 00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.record_payment(:sub, 100, 'usd', true, '2026-01-02 00:00+00', repeat('x', 1000000));
\echo :LAST_ERROR_SQLSTATE

-- nothing changed
SELECT count(*) = :rows_before AS subscriptions_unchanged FROM billing.subscriptions;
SELECT count(*) = :payments_before AS payments_unchanged FROM billing.payments;
SELECT status FROM billing.subscriptions WHERE id = :sub;
