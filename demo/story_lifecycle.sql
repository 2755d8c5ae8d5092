-- The lifecycle on simulated time: ada (user 1) starts a trial, pays,
-- cancels, and falls back to Free when the period ends.
\pset footer off
\echo
\echo '== Ada starts a 14-day Pro trial on 31 January'
SELECT id AS ada_sub, status, trial_start, trial_end
  FROM billing.start_trial('1', 'pro_monthly', '2026-01-31 09:00+00') \gset
SELECT id, status, trial_start, trial_end FROM billing.subscriptions WHERE id = :ada_sub;
SELECT code, limits FROM billing.effective_plan('1', '2026-02-01 09:00+00');
\echo
\echo '== Three days before the trial ends, maintenance queues a reminder'
SELECT * FROM billing.run_maintenance('2026-02-11 09:00+00');
SELECT kind, due_at FROM billing.notifications WHERE user_id = '1';
\echo
\echo '== Ada pays on 12 February: the trial converts and the first paid month starts'
SELECT status, current_period_start, current_period_end
  FROM billing.record_payment(:ada_sub, 2999, 'usd', true, '2026-02-12 10:00+00', 'pi_ada_1');
SELECT number, billing_reason, status, total_cents, amount_paid_cents FROM billing.invoices WHERE user_id = '1';
\echo
\echo '== What an upgrade to Enterprise would cost on 20 February (proration by the second)'
SELECT * FROM billing.preview_change(:ada_sub, 'enterprise_yearly', '2026-02-20 00:00+00');
\echo
\echo '== Ada cancels on 1 March: Pro stays until the period ends on 12 March'
SELECT status, cancel_at_period_end, current_period_end FROM billing.cancel(:ada_sub, true, '2026-03-01 08:00+00');
SELECT code FROM billing.effective_plan('1', '2026-03-10 00:00+00');
\echo
\echo '== Daily maintenance on 13 March ends the subscription: Ada is back on Free'
SELECT * FROM billing.run_maintenance('2026-03-13 00:05+00');
SELECT s.id, p.code AS plan, s.status, s.started_at, s.ended_at, s.end_reason
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id = '1' ORDER BY s.id;
SELECT code, limits FROM billing.effective_plan('1', '2026-03-13 00:05+00');
SELECT kind, due_at FROM billing.notifications WHERE user_id = '1' ORDER BY id;
\echo
\echo '== The state machine the functions follow'
SELECT from_status, action, to_status FROM billing.transitions();
