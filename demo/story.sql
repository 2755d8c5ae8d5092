-- The billing story on the example event platform. Each step prints what it
-- does; errors are part of the story, so the script does not stop on them.
\pset footer off
\echo
\echo '== 1. The application installs billing and attaches it to its users'
CREATE EXTENSION billing;
SELECT billing.attach_users('public.users', 'id') AS users_backfilled;
INSERT INTO public.users (email) VALUES ('linus@example.com');
SELECT s.user_id, p.code AS plan, s.status
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 ORDER BY s.user_id;
\echo
\echo '== 2. The pricing page'
SELECT code, name, price_cents, currency, trial_days, limits FROM billing.pricing;
\echo
\echo '== 3. What ada (user 1) may do today'
SELECT code, limits FROM billing.effective_plan('1', '2026-01-31 09:00+00');
