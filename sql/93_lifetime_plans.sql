-- Lifetime plans (SPEC §1 interval 'lifetime'; README walk W6): one payment,
-- no period end, no renewals, 0 in MRR but a paying customer. An upgrade out
-- of a paid lifetime plan credits what was paid for it; cancel at period end,
-- pause and a downgrade are QB010 naming the action and the status; cancel
-- now ends it (Free follows).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits)
VALUES ('pro_lifetime', 'Pro (lifetime)', 'pro', 'lifetime', 49900, 'usd', 0, '{"rooms": 50, "participants_per_room": 500}'),
       ('ent_lifetime', 'Enterprise (lifetime)', 'enterprise', 'lifetime', 199900, 'usd', 0, '{"rooms": null}');
CREATE FUNCTION pg_temp.sub(u text) RETURNS bigint LANGUAGE sql AS
	$$ SELECT id FROM billing.subscriptions WHERE user_id = u AND ended_at IS NULL $$;

-- subscribe: incomplete, the full price once, no period end
SELECT status, price_cents, billing_interval, current_period_end
  FROM billing.subscribe('lt1', 'pro_lifetime', '2026-03-01', with_trial => false);
SELECT billing_reason, total_cents, period_end FROM billing.invoices WHERE user_id = 'lt1';
SELECT status, current_period_end FROM billing.record_payment(pg_temp.sub('lt1'), 49900, 'usd', true, '2026-03-01 01:00');
-- entitled for good; MRR 0, but it is a paying subscription
SELECT code FROM billing.effective_plan('lt1', '2036-03-01');
SELECT * FROM billing.mrr('2026-06-01');
-- maintenance has nothing to renew
SELECT * FROM billing.run_maintenance('2027-03-02');
SELECT count(*) AS invoices FROM billing.invoices WHERE user_id = 'lt1';

-- refused, each naming the action and the status (QB010)
\set VERBOSITY default
SELECT billing.cancel(pg_temp.sub('lt1'), true, '2026-04-01');
SELECT billing.pause(pg_temp.sub('lt1'), '2026-04-01');
SELECT billing.change_plan(pg_temp.sub('lt1'), 'pro_yearly', '2026-04-01');
\set VERBOSITY terse

-- upgrade to a higher lifetime plan: what was paid is credited
SELECT * FROM billing.preview_change(pg_temp.sub('lt1'), 'ent_lifetime', '2026-06-01');
SELECT p.code, c.status, c.current_period_end
  FROM billing.change_plan(pg_temp.sub('lt1'), 'ent_lifetime', '2026-06-01') c JOIN billing.subscription_plans p ON p.id = c.plan_id;
SELECT billing_reason, total_cents, amount_due_cents FROM billing.invoices WHERE user_id = 'lt1' ORDER BY id;
SELECT status FROM billing.record_payment(pg_temp.sub('lt1'), 150000, 'usd', true, '2026-06-01 01:00');
SELECT billing.credit_balance('lt1', 'usd');
-- a monthly customer moving to lifetime: unused time credited, not churn
SELECT count(*) FROM billing.subscribe('lt2', 'pro_monthly', '2026-03-01', with_trial => false);
SELECT status FROM billing.record_payment(pg_temp.sub('lt2'), 2999, 'usd', true, '2026-03-01 01:00');
SELECT * FROM billing.preview_change(pg_temp.sub('lt2'), 'pro_lifetime', '2026-03-16');
SELECT count(*) FROM billing.change_plan(pg_temp.sub('lt2'), 'pro_lifetime', '2026-03-16');
SELECT status FROM billing.record_payment(pg_temp.sub('lt2'), 49900 - 1548, 'usd', true, '2026-03-16 01:00');
SELECT customers_at_start, customers_churned, mrr_churned_cents FROM billing.churn('2026-03-10', '2026-07-01');

-- cancel now is the way out: Free follows, and that is churn
SELECT status, ended_at FROM billing.cancel(pg_temp.sub('lt1'), false, '2026-07-01');
SELECT code FROM billing.effective_plan('lt1', '2026-07-02');
-- a Free subscription cannot be canceled or paused (QB010 naming the status)
\set VERBOSITY default
SELECT billing.cancel(pg_temp.sub('lt1'), false, '2026-07-02');
SELECT billing.pause(pg_temp.sub('lt1'), '2026-07-02');
-- the canceled lifetime customer churned (0 MRR lost: a lifetime price adds none)
\set VERBOSITY terse
SELECT customers_at_start, customers_churned, mrr_churned_cents FROM billing.churn('2026-03-10', '2026-07-02');
