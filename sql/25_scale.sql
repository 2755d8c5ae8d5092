-- Scale promises that a plan or a catalog can show (the figures are in
-- bench/scale/): what is due comes from an index a page at a time, per-row
-- helpers are inlined, one statement can change thousands of users without a
-- lock-table entry each, and kept plans survive schema changes.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
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

-- == a subscription's earliest unpaid due date (read with every subscription
-- loaded) is one probe of its own open invoices, not a walk over all open ones
SELECT count(*) FROM (SELECT billing.subscribe('open-' || i, 'pro_monthly', '2026-01-01 00:00+00', false)
						FROM generate_series(1, 500) i) t;
ANALYZE billing.invoices;
SELECT pg_temp.plan($q$
	SELECT (SELECT min(i.due_at) FROM billing.invoices i
			 WHERE i.subscription_id = s.id AND i.status = 'open' AND i.deleted_at IS NULL)
	  FROM billing.subscriptions s WHERE s.id = 1$q$) ~ 'invoices_open_by_subscription' AS own_invoices_only;

-- == a credit balance reads the credit kinds' own index (the balance query of
-- src/glue/lifecycle.cpp), not every ledger entry of the user (most are
-- payment_to_invoice, a random heap page each on a large book)
SET enable_seqscan = off;  -- a small ledger would be read whole
SET enable_bitmapscan = off;
SELECT pg_temp.plan($q$
	SELECT COALESCE(pg_catalog.sum(CASE WHEN e.kind OPERATOR(pg_catalog.=) ANY ('{credit_to_invoice,credit_refunded}'::pg_catalog.text[])
		   THEN OPERATOR(pg_catalog.-) e.amount_cents ELSE e.amount_cents END), 0)::pg_catalog.int8
	  FROM billing.ledger_entries e WHERE e.deleted_at IS NULL
	   AND e.kind OPERATOR(pg_catalog.=) ANY
	   ('{payment_to_credit,proration_credit,void_to_credit,credit_to_invoice,credit_refunded}'::pg_catalog.text[])
	   AND e.user_id OPERATOR(pg_catalog.=) 'open-1' AND e.currency OPERATOR(pg_catalog.=) 'usd'$q$)
	~ 'Index Scan using ledger_entries_credit' AS credit_entries_only;
RESET enable_seqscan;
RESET enable_bitmapscan;

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

-- == plain renewals of a page are written set-based (one statement for the
-- page, each row's change time declared for the history): 300 subscriptions
-- due at three different times, with no credit, credit for half a period and
-- credit for a whole one
SELECT count(*) FROM (
	SELECT billing.record_payment(s.id, 2999 + (i % 3) * 1500, 'usd', true, '2026-01-01 05:00+00')
	  FROM generate_series(1, 300) i,
		   LATERAL billing.subscribe('renew-' || i, 'pro_monthly', '2026-01-01 00:00+00'::timestamptz + (i % 3) * interval '1 hour', false) s) t;
BEGIN;
SET LOCAL track_functions = 'all';
-- (calls of statements before, not yet reported to the statistics, are shown too)
SELECT COALESCE(pg_catalog.sum(calls) FILTER (WHERE funcname = '_history_updated'), 0) AS history_before,
	   COALESCE(pg_catalog.sum(calls) FILTER (WHERE funcname = '_quota_invalidate_users'), 0) AS quota_before
  FROM pg_stat_xact_user_functions WHERE schemaname = 'billing' \gset
SELECT * FROM billing.run_maintenance('2026-02-01 03:00+00') ORDER BY action;
-- the 500 incomplete subscriptions that time out and the 300 renewals are
-- one UPDATE: one call of the history trigger (503 with row-by-row timeouts
-- and one statement per due time); the Free fallbacks are one INSERT for the
-- page (501 calls when billing._start_free ran per user)
SELECT funcname, calls - CASE funcname WHEN '_history_updated' THEN :history_before ELSE :quota_before END AS calls
  FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname IN ('_history_updated', '_quota_invalidate_users') ORDER BY 1;
-- the per-row times are gone after the statement: a later UPDATE in the same
-- transaction is dated by billing.change_at
SAVEPOINT probe;
SELECT billing._set_change_at('2026-02-01 04:00+00');
UPDATE billing.subscriptions SET cancel_at_period_end = true WHERE user_id = 'renew-1' AND ended_at IS NULL;
SELECT h.valid_from, h.previous_status, h.cancel_at_period_end FROM billing.subscription_history h
  JOIN billing.subscriptions s ON s.id = h.subscription_id
 WHERE s.user_id = 'renew-1' AND h.valid_to = 'infinity';
ROLLBACK TO probe;
COMMIT;
-- each one invoice for its new period: 1500 of credit pays part of it, 3000 all of it
SELECT i.status, i.credit_applied_cents, i.amount_due_cents, count(*)
  FROM billing.invoices i WHERE i.user_id LIKE 'renew-%' AND i.billing_reason = 'subscription_cycle'
 GROUP BY 1, 2, 3 ORDER BY 1, 2;
SELECT count(*) AS wrong_period FROM billing.invoices i JOIN billing.subscriptions s ON s.id = i.subscription_id
 WHERE i.user_id LIKE 'renew-%' AND i.billing_reason = 'subscription_cycle'
   AND (i.period_start, i.period_end, i.due_at) IS DISTINCT FROM
	   (s.current_period_start, s.current_period_end, s.current_period_start + interval '3 days');
-- what credit is left: 100 x (3000 - 2999) + 100 x 0
SELECT sum(billing.credit_balance(user_id)) AS credit_left, count(*) FILTER (WHERE billing.credit_balance(user_id) > 0)
  FROM billing.subscriptions WHERE user_id LIKE 'renew-%' AND ended_at IS NULL;
SELECT count(*) AS ledger_rows, sum(amount_cents) FROM billing.ledger_entries
 WHERE user_id LIKE 'renew-%' AND kind = 'credit_to_invoice';
-- the history dates each renewal at its own period end, not at one time for the page
SELECT h.valid_from = s.current_period_start AS dated_at_period_end, count(*)
  FROM billing.subscription_history h JOIN billing.subscriptions s ON s.id = h.subscription_id
 WHERE s.user_id LIKE 'renew-%' AND h.valid_to = 'infinity' GROUP BY 1;
-- an audit row per renewal, as row by row
SELECT count(*) AS audited FROM billing.audit_log a JOIN billing.subscriptions s ON a.row_id = s.id::text
 WHERE a.table_name = 'subscriptions' AND a.action = 'UPDATE' AND s.user_id LIKE 'renew-%'
   AND a.new_row ->> 'current_period_start' = a.old_row ->> 'current_period_end';

-- == the audit trail is written per statement: one call of the trigger for a
-- statement of 4,000 rows (four inserts of 1,000), an audit row for each
BEGIN;
SET LOCAL track_functions = 'all';
SELECT COALESCE(pg_catalog.sum(calls), 0) AS audit_before FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_audit' \gset
UPDATE billing.subscriptions SET metadata = pg_catalog.jsonb_build_object('probe', id) WHERE user_id LIKE 'scale-%';
SELECT calls - :audit_before AS audit_trigger_calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_audit';
SELECT count(*) AS audited, count(DISTINCT row_id) AS rows FROM billing.audit_log
 WHERE table_name = 'subscriptions' AND action = 'UPDATE' AND row_id = new_row ->> 'id' AND row_id = old_row ->> 'id'
   AND new_row -> 'metadata' ->> 'probe' = row_id AND old_row -> 'metadata' ->> 'probe' IS NULL;
ROLLBACK;

-- == the history pairs an update's old and new rows by id, as the SQL join
-- did: a statement that changes ids (here of a subscription loaded without
-- triggers, so without history) records nothing for a new id no old row had
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval, started_at,
								   current_period_start)
SELECT 'id-change', p.id, 'active', p.price_cents, p.currency, p.billing_interval, '2026-01-01', '2026-01-01'
  FROM billing.subscription_plans p WHERE p.code = 'free';
SET LOCAL session_replication_role = origin;
UPDATE billing.subscriptions SET id = id + 1000000, status = 'canceled', canceled_at = '2026-01-02', ended_at = '2026-01-02'
 WHERE user_id = 'id-change';
SELECT count(*) AS history_rows FROM billing.subscription_history h
  JOIN billing.subscriptions s ON s.id = h.subscription_id WHERE s.user_id = 'id-change';
ROLLBACK;

-- == billing._set_change_at declares the history's change time (the glue sets
-- the same setting directly); microseconds since 1970 UTC, NULL resets it
BEGIN;
SELECT billing._set_change_at('2026-01-01 00:00:01.5+00');
SELECT pg_catalog.current_setting('billing.change_at') AS change_at;
SELECT billing._set_change_at(NULL);
SELECT pg_catalog.current_setting('billing.change_at') = '' AS reset;
ROLLBACK;

-- == before the table's first ANALYZE (issue 12): a user's current
-- subscription is found through an index condition on user_id, not by a scan
-- of a partial index whose predicate the lookup implies. Kept plans are
-- generic and made once per backend; on a new install every index then looks
-- one row long (reltuples 0, relpages 1; the table never analyzed, no column statistics), and a
-- scan of subscriptions_due_period_end, one entry per current subscription,
-- cost the same. The statistics of a new install, for this transaction only.
BEGIN;
UPDATE pg_catalog.pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'billing.subscriptions'::pg_catalog.regclass;
UPDATE pg_catalog.pg_class SET reltuples = 0, relpages = 1
 WHERE oid IN (SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = 'billing.subscriptions'::pg_catalog.regclass);
DELETE FROM pg_catalog.pg_statistic WHERE starelid = 'billing.subscriptions'::pg_catalog.regclass;
SET LOCAL plan_cache_mode = force_generic_plan;
PREPARE current_of(text) AS
	SELECT s.id FROM billing.subscriptions s
	 WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.deleted_at IS NULL FOR UPDATE OF s;
SELECT pg_temp.plan($q$EXECUTE current_of('scale-1')$q$) ~ 'Index Cond: \(s\.user_id = \$1\)' AS current_by_user_id;
ROLLBACK;
DEALLOCATE current_of;

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

-- == a lifecycle call's write of its user's lock row is a HOT update: the
-- table's fillfactor leaves room on every page, so the row's new version
-- stays on its page (no primary-key entry, no second page written), also on
-- a page that a bulk of lock rows filled (the upgrade from 0.2.0 inserts
-- every subscriber's at once; pages packed full moved the row on its first write)
SELECT pg_catalog.array_to_string(c.reloptions, ',') AS user_locks_options
  FROM pg_catalog.pg_class c WHERE c.oid = 'billing.user_locks'::regclass;
INSERT INTO billing.user_locks (user_id) SELECT 'hot-' || i FROM generate_series(1, 500) i;
CREATE TEMP TABLE lock_page AS
SELECT (l.ctid::text::point)[0] AS page FROM billing.user_locks l WHERE l.user_id = 'hot-250';
SELECT status FROM billing.start_trial('hot-250', 'pro_monthly', '2026-01-01 00:00+00');
SELECT (l.ctid::text::point)[0] = p.page AS same_page FROM billing.user_locks l, lock_page p WHERE l.user_id = 'hot-250';
