-- Reports for the DBA at the end of the story. Grace pays yearly, Linus
-- monthly; Ada's month is in the books.
\pset footer off
SELECT now() AS day0 \gset
SELECT id AS grace_sub FROM billing.subscribe('2', 'pro_yearly', :'day0', with_trial => false) \gset
SELECT status FROM billing.record_payment(:grace_sub, 28800, 'usd', true, :'day0', 'pi_grace_1');
SELECT id AS linus_sub FROM billing.subscribe('3', 'pro_monthly', :'day0', with_trial => false) \gset
SELECT status FROM billing.record_payment(:linus_sub, 2999, 'usd', true, :'day0', 'pi_linus_1');
\echo
\echo '== Reports on day 20 (Ada paying, Grace yearly, Linus monthly)'
SELECT * FROM billing.mrr(:'day0'::timestamptz + interval '20 days');
SELECT * FROM billing.arr(:'day0'::timestamptz + interval '20 days');
SELECT * FROM billing.active_subscriptions(:'day0'::timestamptz + interval '20 days');
SELECT * FROM billing.plan_distribution(:'day0'::timestamptz + interval '20 days');
\echo
\echo '== Over the whole story'
SELECT * FROM billing.trial_conversion(:'day0'::timestamptz - interval '1 day', :'day0'::timestamptz + interval '60 days');
SELECT * FROM billing.arpu(:'day0'::timestamptz - interval '1 day', :'day0'::timestamptz + interval '60 days');
SELECT * FROM billing.churn(:'day0'::timestamptz + interval '20 days', :'day0'::timestamptz + interval '50 days');
SELECT * FROM billing.revenue(date_trunc('week', :'day0'::timestamptz), :'day0'::timestamptz + interval '6 weeks', 'week');
SELECT * FROM billing.daily_report((:'day0'::timestamptz + interval '12 days')::date);
