-- attach_users, configure, effective_plan and the table constraints.
CREATE SCHEMA attach_app;
CREATE TABLE attach_app.users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);
INSERT INTO attach_app.users (id, email) VALUES (9001, 'a@example.com'), (9002, 'b@example.com'), (9003, 'c@example.com');
SELECT setval('attach_app.users_id_seq', 9003);
CREATE FUNCTION pg_temp.state() RETURNS TABLE (subscriptions bigint, current_free bigint, digest text)
LANGUAGE sql AS $$
	SELECT count(*), count(*) FILTER (WHERE s.ended_at IS NULL AND p.code = 'free' AND s.status = 'active'),
	       md5(string_agg(s::text, '|' ORDER BY s.id))
	  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
	 WHERE s.user_id LIKE '900_'
$$;

-- backfill: one Free subscription per existing user
SELECT subscriptions, current_free FROM pg_temp.state();
SELECT billing.attach_users('attach_app.users', 'id') AS backfilled;
SELECT subscriptions, current_free FROM pg_temp.state();
SELECT s.user_id, p.code, s.status, s.price_cents, s.currency, s.billing_interval, s.ended_at IS NULL AS current
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id LIKE '900_' ORDER BY s.user_id;
-- a new user gets one on insert
INSERT INTO attach_app.users (email) VALUES ('d@example.com');
SELECT subscriptions, current_free FROM pg_temp.state();
-- running it twice changes nothing: no subscription, no attachment row touched
SELECT digest AS digest_before FROM pg_temp.state() \gset
SELECT md5(string_agg(a::text, '|' ORDER BY a.id)) AS attachments_before FROM billing.attachments a \gset
SELECT billing.attach_users('attach_app.users', 'id') AS backfilled;
SELECT subscriptions, current_free, digest = :'digest_before' AS unchanged FROM pg_temp.state();
SELECT md5(string_agg(a::text, '|' ORDER BY a.id)) = :'attachments_before' AS attachments_unchanged
  FROM billing.attachments a;
SELECT relation, kind, key_column FROM billing.attachments WHERE relation = 'attach_app.users'::regclass;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'attach_app.users'::regclass AND NOT tgisinternal ORDER BY 1;
-- the new user still gets exactly one
INSERT INTO attach_app.users (email) VALUES ('e@example.com');
SELECT subscriptions, current_free FROM pg_temp.state();

-- bad inputs
SELECT billing.attach_users('attach_app.no_such_table', 'id');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_users('attach_app.users', 'no_such_column');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_users(NULL, 'id');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_users('attach_app.users', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_users('attach_app.users', 'tableoid');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS attachments FROM billing.attachments WHERE relation = 'attach_app.users'::regclass;

-- billing.configure: bad inputs are refused with 22023 and change nothing
SELECT md5(string_agg(s::text, '|' ORDER BY s.key)) AS settings_before FROM billing.settings s \gset
SELECT coalesce(max(id), 0) AS audit_before FROM billing.audit_log \gset
SELECT billing.configure('no_such_setting', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('past_due_grace', 'a fortnight');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('past_due_grace', '-1 day');
\echo :LAST_ERROR_SQLSTATE
-- accepted before, it then made every effective_plan fail with 22003
SELECT billing.configure('past_due_grace', '178000000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('stripe_tolerance', '1 minute ago');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('stripe_tolerance', '999999999999 years');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('past_due_grace', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure(NULL, '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('stripe_webhook_secret', '   ');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.configure('stripe_webhook_secret', 'whsec_a,,whsec_b');
\echo :LAST_ERROR_SQLSTATE
SELECT md5(string_agg(s::text, '|' ORDER BY s.key)) = :'settings_before' AS settings_unchanged FROM billing.settings s;
SELECT count(*) AS new_audit_rows FROM billing.audit_log WHERE id > :audit_before;
-- a good value is accepted (and put back)
SELECT billing.configure('stripe_tolerance', '10 minutes');
SELECT value FROM billing.settings WHERE key = 'stripe_tolerance';
SELECT billing.configure('stripe_tolerance', '5 minutes');

-- effective_plan: a user with no subscription is on Free
SELECT code, price_cents, limits FROM billing.effective_plan('attach-nobody');
SELECT code FROM billing.effective_plan('9001');
SELECT code FROM billing.effective_plan('9001', '1990-01-01');
SELECT code FROM billing.effective_plan(NULL);

-- the partial unique index: one current subscription per user
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval,
                                   started_at, current_period_start)
VALUES ('9001', 2, 'active', 2999, 'usd', 'monthly', now(), now());
\echo :LAST_ERROR_SQLSTATE
-- ... but history is fine: an ended one next to the current one
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval,
                                   started_at, current_period_start, current_period_end, ended_at)
VALUES ('9001', 2, 'expired', 2999, 'usd', 'monthly', '2024-01-01', '2024-01-01', '2024-02-01', '2024-02-01');
SELECT count(*) AS subscriptions_of_9001, count(*) FILTER (WHERE ended_at IS NULL) AS current
  FROM billing.subscriptions WHERE user_id = '9001';

-- CHECK constraints (terse: the failing row would show the current time)
\set VERBOSITY terse
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('negative', 'Negative', 'custom', 'monthly', -1, 'usd');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('two_letters', 'Two letters', 'custom', 'monthly', 100, 'US');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('upper_case', 'Upper case', 'custom', 'monthly', 100, 'USD');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval,
                                   started_at, current_period_start, current_period_end)
VALUES ('attach-backwards', 2, 'active', 2999, 'usd', 'monthly', '2024-02-01', '2024-02-01', '2024-01-01');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval,
                                   started_at, current_period_start)
VALUES ('attach-negative', 2, 'active', -5, 'usd', 'monthly', now(), now());
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.invoices (number, user_id, currency, issued_at, period_start, period_end)
VALUES ('INV-BACKWARDS', 'x', 'usd', now(), '2024-02-01', '2024-01-01');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.payments (user_id, amount_cents, currency, status, paid_at)
VALUES ('x', -100, 'usd', 'succeeded', now());
\echo :LAST_ERROR_SQLSTATE

\set VERBOSITY default

-- clean up: detach leaves the application's table and rows as they were
SELECT billing.detach('attach_app.users');
SELECT count(*) AS users FROM attach_app.users;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'attach_app.users'::regclass AND NOT tgisinternal ORDER BY 1;
DROP SCHEMA attach_app CASCADE;
