-- start_trial in plain SQL: the Free subscription ends, a trial starts, an audit row each
WITH f AS (SELECT user_id FROM bench.free WHERE n = (SELECT nextval('bench.free_seq'))),
p AS (SELECT * FROM billing.subscription_plans WHERE code = 'pro_monthly'),
old AS (SELECT s.* FROM billing.subscriptions s JOIN f ON s.user_id = f.user_id
		 WHERE s.ended_at IS NULL AND s.deleted_at IS NULL FOR UPDATE OF s),
ended AS (UPDATE billing.subscriptions s SET status = 'canceled', ended_at = '2026-12-01 00:00+00',
				 canceled_at = '2026-12-01 00:00+00', end_reason = 'plan_changed', updated_at = now()
			FROM old WHERE s.id = old.id RETURNING s.*),
started AS (INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval,
				started_at, current_period_start, current_period_end, trial_start, trial_end)
			SELECT e.user_id, p.id, 'trialing', p.price_cents, p.currency, p.billing_interval, '2026-12-01 00:00+00',
				   '2026-12-01 00:00+00', '2026-12-01 00:00+00'::timestamptz + p.trial_days * interval '1 day',
				   '2026-12-01 00:00+00', '2026-12-01 00:00+00'::timestamptz + p.trial_days * interval '1 day'
			  FROM ended e, p RETURNING *),
audit AS (INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row)
		  SELECT 'subscriptions', e.id::text, 'UPDATE', to_jsonb(o), to_jsonb(e) FROM ended e JOIN old o ON o.id = e.id
		  UNION ALL SELECT 'subscriptions', s.id::text, 'INSERT', NULL, to_jsonb(s) FROM started s)
SELECT id FROM started;
