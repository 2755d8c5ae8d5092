-- a payment converting a trial in plain SQL: the subscription becomes active,
-- its first invoice is issued paid, the payment stored, an audit row each
-- (billing issues the invoice open and then marks it paid: one row change more)
WITH t AS (SELECT id FROM bench.trialing WHERE n = (SELECT nextval('bench.trialing_seq'))),
old AS (SELECT s.* FROM billing.subscriptions s JOIN t ON s.id = t.id FOR UPDATE OF s),
converted AS (UPDATE billing.subscriptions s SET status = 'active', trial_end = '2026-12-01 00:00+00',
					 billing_anchor = '2026-12-01 00:00+00', current_period_start = '2026-12-01 00:00+00',
					 current_period_end = '2027-01-01 00:00+00', updated_at = now()
				FROM old WHERE s.id = old.id RETURNING s.*),
invoice AS (INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency,
				period_start, period_end, subtotal_cents, total_cents, amount_paid_cents, amount_due_cents, lines,
				issued_at, paid_at, due_at)
			SELECT billing._next_invoice_number('2026-12-01 00:00+00'), s.user_id, s.id, 'paid', 'subscription_create',
				   s.currency, s.current_period_start, s.current_period_end, s.price_cents, s.price_cents, s.price_cents, 0,
				   jsonb_build_array(jsonb_build_object('description', 'Pro (monthly) from 2026-12-01 to 2027-01-01',
						'amount_cents', s.price_cents, 'currency', s.currency)), '2026-12-01 00:00+00', '2026-12-01 00:00+00',
				   '2026-12-04 00:00+00'
			  FROM converted s RETURNING *),
payment AS (INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status, paid_at)
			SELECT i.user_id, i.subscription_id, i.id, 2999, 'usd', 'succeeded', '2026-12-01 00:00+00' FROM invoice i
			RETURNING *),
audit AS (INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row)
		  SELECT 'subscriptions', c.id::text, 'UPDATE', to_jsonb(o), to_jsonb(c) FROM converted c JOIN old o ON o.id = c.id
		  UNION ALL SELECT 'invoices', i.id::text, 'INSERT', NULL, to_jsonb(i) FROM invoice i
		  UNION ALL SELECT 'payments', p.id::text, 'INSERT', NULL, to_jsonb(p) FROM payment p)
SELECT id FROM converted;
