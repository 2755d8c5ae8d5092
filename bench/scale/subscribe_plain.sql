-- subscribe without a trial in plain SQL: the Free subscription ends, an
-- incomplete one starts with its first invoice, an audit row each
WITH f AS (SELECT user_id FROM bench.free WHERE n = (SELECT nextval('bench.free_seq'))),
p AS (SELECT * FROM billing.subscription_plans WHERE code = 'pro_monthly'),
old AS (SELECT s.* FROM billing.subscriptions s JOIN f ON s.user_id = f.user_id
		 WHERE s.ended_at IS NULL AND s.deleted_at IS NULL FOR UPDATE OF s),
ended AS (UPDATE billing.subscriptions s SET status = 'canceled', ended_at = '2026-12-01 00:00+00',
				 canceled_at = '2026-12-01 00:00+00', end_reason = 'plan_changed', updated_at = now()
			FROM old WHERE s.id = old.id RETURNING s.*),
started AS (INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval,
				started_at, billing_anchor, current_period_start, current_period_end)
			SELECT e.user_id, p.id, 'incomplete', p.price_cents, p.currency, p.billing_interval, '2026-12-01 00:00+00',
				   '2026-12-01 00:00+00', '2026-12-01 00:00+00', '2027-01-01 00:00+00'
			  FROM ended e, p RETURNING *),
invoice AS (INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency,
				period_start, period_end, subtotal_cents, total_cents, amount_due_cents, lines, issued_at, due_at)
			SELECT billing._next_invoice_number('2026-12-01 00:00+00'), s.user_id, s.id, 'open', 'subscription_create',
				   s.currency, s.current_period_start, s.current_period_end, s.price_cents, s.price_cents, s.price_cents,
				   jsonb_build_array(jsonb_build_object('description', 'Pro (monthly) from 2026-12-01 to 2027-01-01',
						'amount_cents', s.price_cents, 'currency', s.currency)), '2026-12-01 00:00+00',
				   '2026-12-04 00:00+00'
			  FROM started s RETURNING *),
audit AS (INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row)
		  SELECT 'subscriptions', e.id::text, 'UPDATE', to_jsonb(o), to_jsonb(e) FROM ended e JOIN old o ON o.id = e.id
		  UNION ALL SELECT 'subscriptions', s.id::text, 'INSERT', NULL, to_jsonb(s) FROM started s
		  UNION ALL SELECT 'invoices', i.id::text, 'INSERT', NULL, to_jsonb(i) FROM invoice i)
SELECT id FROM started;
