-- cancel at period end in plain SQL: one update and its audit row
WITH p AS (SELECT id FROM bench.paid WHERE n = (SELECT nextval('bench.paid_seq'))),
old AS (SELECT s.* FROM billing.subscriptions s JOIN p ON s.id = p.id FOR UPDATE OF s),
canceled AS (UPDATE billing.subscriptions s SET status = 'canceled', cancel_at_period_end = true,
					canceled_at = '2026-12-01 00:00+00', updated_at = now()
			   FROM old WHERE s.id = old.id RETURNING s.*),
audit AS (INSERT INTO billing.audit_log (table_name, row_id, action, old_row, new_row)
		  SELECT 'subscriptions', c.id::text, 'UPDATE', to_jsonb(o), to_jsonb(c) FROM canceled c JOIN old o ON o.id = c.id)
SELECT id FROM canceled;
