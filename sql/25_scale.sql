-- Scale promises that a plan or a catalog can show (the figures are in
-- bench/scale/): what is due comes from an index a page at a time, per-row
-- helpers are inlined, one statement can change thousands of users without a
-- lock-table entry each, and kept plans survive schema changes.
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.plan(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	line text;
	plan text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF, VERBOSE) ' || query LOOP
		plan := plan || line || E'\n';
	END LOOP;
	RETURN plan;
END
$$;

-- 3,000 users, a third of them due
SELECT count(*) FROM (
	SELECT billing.start_trial('scale-' || i, 'pro_monthly', '2026-01-01 00:00+00'::timestamptz + (i % 3) * interval '20 days')
	  FROM generate_series(1, 3000) i) t;
ANALYZE billing.subscriptions;

-- == the due query reads the due index in (due time, id) order: no Seq Scan, no Sort
SET enable_seqscan = off;  -- a third of a small table is due: it would be read whole
SET enable_bitmapscan = off;
SELECT pg_temp.plan($q$
	SELECT s.id FROM billing.subscriptions s
	 WHERE billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at) <= '2026-01-16 00:00+00'
	   AND (billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at), s.id) > ('-infinity', 0)
	   AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL
	 ORDER BY billing._due_at(s.status, s.current_period_end, s.trial_end, s.started_at), s.id LIMIT 1000
	   FOR UPDATE OF s SKIP LOCKED$q$) ~ 'Scan using subscriptions_due' AS due_index,
	   pg_temp.plan($q$
	SELECT s.id FROM billing.subscriptions s
	 WHERE s.status = 'past_due' AND s.past_due_since <= '2026-01-16 00:00+00' AND (s.past_due_since, s.id) > ('-infinity', 0)
	   AND s.ended_at IS NULL AND s.deleted_at IS NULL AND s.stripe_subscription_id IS NULL
	 ORDER BY s.past_due_since, s.id LIMIT 1000$q$) ~ 'Scan using subscriptions_grace' AS grace_index;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- == run_maintenance in pages: a batch of 700 then the rest, each due trial once
SELECT * FROM billing.run_maintenance('2026-01-16 00:00+00', 700) ORDER BY action;
SELECT * FROM billing.run_maintenance('2026-01-16 00:00+00', 700) ORDER BY action;
SELECT * FROM billing.run_maintenance('2026-01-16 00:00+00', 700) ORDER BY action;  -- nothing left
SELECT status, count(*) FROM billing.subscriptions WHERE user_id LIKE 'scale-%' GROUP BY 1 ORDER BY 1;

-- == per-row helpers are inlined: RETURN bodies, no SET clause
SELECT p.proname, p.proconfig IS NULL AS no_set, p.prosqlbody IS NOT NULL AS bound_body
  FROM pg_proc p WHERE p.pronamespace = 'billing'::regnamespace
   AND p.proname IN ('_micros', '_interval_micros', '_due_at', '_next_invoice_number') ORDER BY 1;
SELECT pg_temp.plan($q$SELECT billing._micros(s.started_at), billing._interval_micros(interval '1 day'),
	billing._next_invoice_number(s.started_at) FROM billing.subscriptions s$q$) !~ '_micros|_next_invoice_number' AS inlined;
SELECT billing._micros('1970-01-01 00:00:01.000001+00'), billing._micros('2026-03-29 01:30+02'),
	   billing._micros('1969-12-31 23:59:59+00'), billing._interval_micros('1 day 2 hours');

-- == one statement, many users: row locks, not a lock-table entry per user
BEGIN;
SELECT count(*) FROM (SELECT billing.start_trial('bulk-' || i, 'pro_monthly', '2026-01-01 00:00+00')
						FROM generate_series(1, 2000) i) t;
SELECT count(*) < 100 AS few_locks FROM pg_locks WHERE pid = pg_backend_pid();
SELECT count(*) AS users_locked FROM billing.user_locks WHERE user_id LIKE 'bulk-%';
ROLLBACK;

-- == kept plans are re-planned when the schema changes under them
ALTER TABLE billing.subscriptions ADD COLUMN scale_probe int;
SELECT status FROM billing.start_trial('after-alter', 'pro_monthly', '2026-01-01 00:00+00');
ALTER TABLE billing.subscriptions DROP COLUMN scale_probe;
SELECT status FROM billing.cancel((SELECT id FROM billing.subscriptions WHERE user_id = 'after-alter'), false,
								  '2026-01-02 00:00+00');
DROP EXTENSION billing CASCADE;
CREATE EXTENSION billing;
SELECT status FROM billing.start_trial('after-recreate', 'pro_monthly', '2026-01-01 00:00+00');
SELECT count(*) FROM billing.run_maintenance('2026-02-01 00:00+00');
