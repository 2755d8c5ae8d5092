-- The lifecycle on simulated time: ada (user 1) starts a trial, pays,
-- cancels, and falls back to Free when the period ends. Day 0 is now; every
-- later step passes its own `at`, the way a test clock fast-forwards.
\pset footer off
SELECT now() AS day0 \gset
\echo
\echo '== Day 0: Ada starts a 14-day Pro trial'
SELECT id AS ada_sub FROM billing.start_trial('1', 'pro_monthly', :'day0') \gset
SELECT id, status, trial_start, trial_end FROM billing.subscriptions WHERE id = :ada_sub;
SELECT code, limits FROM billing.effective_plan('1', :'day0');
\echo '   on Pro, the room she was refused now goes in'
INSERT INTO public.rooms (owner_id, name) VALUES (1, 'Book club'), (1, 'Retro');
SELECT * FROM billing.quota('1', 'rooms');
\echo
\echo '== Day 11: three days before the trial ends, maintenance queues a reminder'
SELECT * FROM billing.run_maintenance(:'day0'::timestamptz + interval '11 days');
SELECT kind, due_at FROM billing.notifications WHERE user_id = '1';
\echo
\echo '== Day 12: Ada pays; the trial converts and the first paid month starts'
SELECT status, current_period_start, current_period_end
  FROM billing.record_payment(:ada_sub, 2999, 'usd', true, :'day0'::timestamptz + interval '12 days', 'pi_ada_1');
SELECT number, billing_reason, status, total_cents, amount_paid_cents FROM billing.invoices WHERE user_id = '1';
\echo
\echo '== Day 20: what an upgrade to Enterprise would cost now (proration by the second)'
SELECT * FROM billing.preview_change(:ada_sub, 'enterprise_yearly', :'day0'::timestamptz + interval '20 days');
\echo
\echo '== Day 29: Ada cancels; Pro stays until the period ends'
SELECT status, cancel_at_period_end, current_period_end
  FROM billing.cancel(:ada_sub, true, :'day0'::timestamptz + interval '29 days');
SELECT code FROM billing.effective_plan('1', :'day0'::timestamptz + interval '35 days');
\echo
\echo '== Day 45: daily maintenance ends the subscription; Ada is back on Free'
SELECT * FROM billing.run_maintenance(:'day0'::timestamptz + interval '45 days');
SELECT s.id, p.code AS plan, s.status, s.started_at, s.ended_at, s.end_reason
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id = '1' ORDER BY s.id;
SELECT code, limits FROM billing.effective_plan('1', :'day0'::timestamptz + interval '45 days');
SELECT kind, due_at FROM billing.notifications WHERE user_id = '1' ORDER BY id;
\echo '   back on Free with 5 rooms: she keeps them, but cannot add more'
SELECT * FROM billing.over_quota(:'day0'::timestamptz + interval '45 days');
\echo
\echo '== The state machine the functions follow'
SELECT from_status, action, to_status FROM billing.transitions();
