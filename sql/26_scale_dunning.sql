-- Maintenance writes a page's single due steps set-based (renewals, dunning,
-- trial and grace ends, timeouts, their voided invoices, Free fallbacks and
-- notifications), deciding each in the core as row by row: the same rows as
-- billing.maintenance_row_by_row, which sends every step through CatchUp.
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION billing;
SET timezone = 'UTC';

-- A book of 48 users started over ten days (trials that end unpaid,
-- first payments never made, cancels at period end, renewals paid by credit,
-- renewals credit pays part of that fall into dunning, renew in dunning and
-- end at the grace end with their invoices voided and the Free fallback),
-- maintenance run every day for four months, once with
-- billing.maintenance_row_by_row (every step through CatchUp) and once
-- set-based; everything it wrote is compared (ids and now() aside)
SELECT count(*) FROM (
	SELECT CASE i % 5
		WHEN 0 THEN billing.start_trial('dun-' || i, 'pro_monthly', d)
		ELSE billing.subscribe('dun-' || i, 'pro_monthly', d, false) END
	  FROM generate_series(1, 48) i, LATERAL (SELECT '2026-03-01 00:00+00'::timestamptz + (i % 10) * interval '1 day') t(d)) x;
SELECT count(*) FROM (
	SELECT CASE WHEN i % 5 = 1 THEN NULL  -- never pays: times out after 23 hours
		ELSE billing.record_payment(s.id, CASE i % 5 WHEN 2 THEN 2999 WHEN 3 THEN 2999 * 3 ELSE 2999 + 1000 END, 'usd',
									true, s.started_at + interval '1 hour') END
	  FROM generate_series(1, 48) i JOIN billing.subscriptions s ON s.user_id = 'dun-' || i AND s.ended_at IS NULL
	 WHERE i % 5 <> 0) x;
SELECT count(*) FROM (
	SELECT billing.cancel(s.id, true, s.started_at + interval '2 days')
	  FROM billing.subscriptions s WHERE s.user_id LIKE 'dun-%' AND s.ended_at IS NULL AND s.status = 'active'
	   AND substr(s.user_id, 5)::int % 5 = 2) x;
CREATE TEMP VIEW dun_state AS
WITH k AS (SELECT s.id, s.user_id || '@' || s.started_at AS key FROM billing.subscriptions s WHERE s.user_id LIKE 'dun-%'),
ik AS (SELECT i.id, k.key || '/' || i.billing_reason || '/' || i.period_start AS key
		 FROM billing.invoices i JOIN k ON k.id = i.subscription_id)
SELECT 'subscription ' || ROW(s.user_id, s.plan_id, s.status, s.price_cents, s.currency, s.billing_interval, s.started_at,
	s.billing_anchor, s.current_period_start, s.current_period_end, s.trial_start, s.trial_end, s.cancel_at_period_end,
	s.canceled_at, s.ended_at, s.paused_at, s.past_due_since, s.scheduled_plan_id, s.scheduled_change_at, s.end_reason,
	s.deleted_at)::text AS x
  FROM billing.subscriptions s WHERE s.user_id LIKE 'dun-%'
UNION ALL
SELECT 'invoice ' || ROW(ik.key, i.user_id, i.status, i.currency, i.period_end, i.subtotal_cents, i.total_cents,
	i.amount_paid_cents, i.amount_due_cents, i.lines, i.issued_at, i.paid_at, i.due_at, i.credit_applied_cents,
	i.void_reason)::text
  FROM billing.invoices i JOIN ik ON ik.id = i.id
UNION ALL
SELECT 'ledger ' || ROW(e.user_id, e.currency, e.kind, e.amount_cents, e.payment_id, ik.key, e.at)::text
  FROM billing.ledger_entries e LEFT JOIN ik ON ik.id = e.invoice_id WHERE e.user_id LIKE 'dun-%'
UNION ALL
SELECT 'history ' || ROW(k.key, h.user_id, h.plan_id, h.status, h.previous_status, h.price_cents, h.currency,
	h.billing_interval, h.current_period_start, h.current_period_end, h.trial_start, h.trial_end, h.cancel_at_period_end,
	h.canceled_at, h.ended_at, h.paused_at, h.end_reason, h.paid_since, h.removed, h.valid_from, h.valid_to)::text
  FROM billing.subscription_history h JOIN k ON k.id = h.subscription_id
UNION ALL
SELECT 'notification ' || ROW(n.user_id, k.key, n.kind, n.due_at, n.sent_at)::text
  FROM billing.notifications n JOIN k ON k.id = n.subscription_id
UNION ALL
SELECT 'audit ' || ROW(a.action, a.old_row - 'id' - 'created_at' - 'updated_at',
	a.new_row - 'id' - 'created_at' - 'updated_at')::text
  FROM billing.audit_log a WHERE a.table_name = 'subscriptions' AND COALESCE(a.new_row, a.old_row) ->> 'user_id' LIKE 'dun-%'
UNION ALL
SELECT 'lock ' || l.user_id FROM billing.user_locks l WHERE l.user_id LIKE 'dun-%';
CREATE TEMP VIEW dun_summary AS SELECT pg_catalog.md5(pg_catalog.string_agg(x, E'\n' ORDER BY x)) AS state,
	pg_catalog.count(*) AS rows FROM dun_state;
CREATE TEMP TABLE dun_actions (action text, count bigint);
-- only superusers choose
SET ROLE billing_admin;
SET billing.maintenance_row_by_row = on;
RESET ROLE;
BEGIN;
SET LOCAL track_functions = 'all';
SET LOCAL billing.maintenance_row_by_row = on;
SELECT COALESCE(pg_catalog.sum(calls), 0) AS history_before FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_history_updated' \gset
UPDATE billing.settings SET value = '40 days' WHERE key = 'past_due_grace';
INSERT INTO dun_actions SELECT m.action, sum(m.count) FROM generate_series('2026-03-01 12:00+00'::timestamptz,
	'2026-06-30 12:00+00', interval '1 day') d, LATERAL billing.run_maintenance(d) m GROUP BY 1;
SELECT state AS row_by_row_state, rows AS row_by_row_rows FROM dun_summary \gset
SELECT pg_catalog.md5(pg_catalog.string_agg(action || count, ',' ORDER BY action)) AS row_by_row_actions FROM dun_actions \gset
SELECT calls - :history_before AS row_by_row_history_calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_history_updated' \gset
ROLLBACK;
BEGIN;
SET LOCAL track_functions = 'all';
SELECT COALESCE(pg_catalog.sum(calls), 0) AS history_before FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_history_updated' \gset
UPDATE billing.settings SET value = '40 days' WHERE key = 'past_due_grace';
INSERT INTO dun_actions SELECT m.action, sum(m.count) FROM generate_series('2026-03-01 12:00+00'::timestamptz,
	'2026-06-30 12:00+00', interval '1 day') d, LATERAL billing.run_maintenance(d) m GROUP BY 1;
SELECT action, count FROM dun_actions WHERE action NOT LIKE 'usage%' ORDER BY 1;
SELECT state = :'row_by_row_state' AS same_rows, rows = :row_by_row_rows AS same_count, rows > 400 AS rows_compared
  FROM dun_summary;
SELECT pg_catalog.md5(pg_catalog.string_agg(action || count, ',' ORDER BY action)) = :'row_by_row_actions' AS same_counts
  FROM dun_actions;
SELECT calls - :history_before < :row_by_row_history_calls AS fewer_statements FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_history_updated';
SELECT pg_catalog.split_part(x, ' ', 1) AS written, count(*) FILTER (WHERE x LIKE '%void_to_credit%') AS void_to_credit,
	count(*) FILTER (WHERE x ~ ',past_due,') AS past_due, count(*)
  FROM dun_state GROUP BY 1 ORDER BY 1;
ROLLBACK;
