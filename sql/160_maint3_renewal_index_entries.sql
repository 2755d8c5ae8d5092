-- Issue 13 (maintenance cost): a renewal writes no entry into an index no
-- query reads it by. The period-end index holds Stripe's subscriptions only
-- (billing's own upcoming renewals are found through subscriptions_due, their
-- due time), and the Stripe invoice id's unique index only invoices that have
-- one. Counted with pageinspect: the index entries that point at the live row.
-- What the indexes serve stays: upcoming renewals of both kinds are notified,
-- a Stripe invoice id stays unique.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION IF NOT EXISTS pageinspect;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
-- entries of a (one-page) index that point at a row's live version
CREATE FUNCTION pg_temp.entries(idx regclass, row_ctid tid) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM pg_catalog.generate_series(1, (pg_catalog.pg_relation_size(idx) / 8192)::int - 1) b,
		   LATERAL bt_page_items(idx::text, b) i
	 WHERE i.htid = row_ctid
$$;
-- billing's own monthly subscription, and one Stripe manages (its id set directly)
SELECT status FROM billing.subscribe('m3a', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'm3a' AND ended_at IS NULL),
										  2999, 'usd', true, '2030-01-01');
SELECT status FROM billing.subscribe('m3s', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'm3s' AND ended_at IS NULL),
										  2999, 'usd', true, '2030-01-01');
UPDATE billing.subscriptions SET stripe_subscription_id = 'sub_m3s' WHERE user_id = 'm3s' AND ended_at IS NULL;
-- upcoming renewals of both kinds, 7 days ahead (both periods end 1 Feb)
SELECT action, count FROM billing.run_maintenance('2030-01-26') WHERE action = 'notified_renewal_upcoming';
SELECT user_id, dedupe_key FROM billing.notifications WHERE kind = 'renewal_upcoming' ORDER BY user_id, dedupe_key;
-- maintenance renews billing's own at its period end
SELECT action, count FROM billing.run_maintenance('2030-02-01') ORDER BY action;
SELECT s.user_id, s.status, s.current_period_end,
	   pg_temp.entries('billing.subscriptions_due_period_end', s.ctid) AS period_end_entries,
	   pg_temp.entries('billing.subscriptions_due', s.ctid) AS due_entries
  FROM billing.subscriptions s WHERE s.user_id IN ('m3a', 'm3s') AND s.ended_at IS NULL ORDER BY s.user_id;
-- the renewal invoice: no entry in the Stripe invoice id's index; two in the
-- indexes by subscription (invoices_one_per_period, and
-- invoices_open_by_subscription while it is open), three before issue 13
SELECT i.billing_reason, i.status, i.stripe_invoice_id IS NULL AS no_stripe_id,
	   pg_temp.entries('billing.invoices_stripe_invoice_id_key', i.ctid) AS stripe_id_entries,
	   pg_temp.entries('billing.invoices_number_key', i.ctid) AS number_entries,
	   (SELECT sum(pg_temp.entries(x.indexrelid, i.ctid)) FROM pg_catalog.pg_index x
		 WHERE x.indrelid = 'billing.invoices'::regclass AND x.indkey[0] = (SELECT a.attnum FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = 'billing.invoices'::regclass AND a.attname = 'subscription_id')) AS by_subscription_entries
  FROM billing.invoices i WHERE i.user_id = 'm3a' AND i.billing_reason = 'subscription_cycle';
-- paid, the renewed period's end is announced in its turn (m3s's period, which
-- Stripe did not move, was announced already)
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'm3a' AND ended_at IS NULL),
										  2999, 'usd', true, '2030-02-01');
SELECT action, count FROM billing.run_maintenance('2030-02-22') WHERE action = 'notified_renewal_upcoming';
SELECT user_id, dedupe_key FROM billing.notifications WHERE kind = 'renewal_upcoming' ORDER BY user_id, dedupe_key;
-- a Stripe invoice id is unique; any number of invoices have none
INSERT INTO billing.invoices (number, user_id, currency, issued_at, stripe_invoice_id)
VALUES ('M3-1', 'm3a', 'usd', '2030-02-02', 'in_m3'), ('M3-2', 'm3a', 'usd', '2030-02-02', NULL),
	   ('M3-3', 'm3a', 'usd', '2030-02-02', NULL);
INSERT INTO billing.invoices (number, user_id, currency, issued_at, stripe_invoice_id)
VALUES ('M3-4', 'm3a', 'usd', '2030-02-02', 'in_m3');
SELECT count(*) AS stripe_invoices FROM billing.invoices WHERE stripe_invoice_id = 'in_m3';
-- one renewal invoice per subscription and period; other invoices of the
-- period, and a soft-deleted renewal, do not count
INSERT INTO billing.invoices (number, user_id, subscription_id, billing_reason, currency, period_start, issued_at)
SELECT 'M3-5', 'm3a', s.id, 'subscription_cycle', 'usd', s.current_period_start, '2030-02-02'
  FROM billing.subscriptions s WHERE s.user_id = 'm3a' AND s.ended_at IS NULL;
INSERT INTO billing.invoices (number, user_id, subscription_id, billing_reason, currency, period_start, issued_at)
SELECT n, 'm3a', s.id, r, 'usd', s.current_period_start, '2030-02-02'
  FROM billing.subscriptions s, (VALUES ('M3-6', 'manual'), ('M3-7', 'manual'), ('M3-8', 'subscription_update')) v(n, r)
 WHERE s.user_id = 'm3a' AND s.ended_at IS NULL;
UPDATE billing.invoices SET deleted_at = '2030-02-03' WHERE user_id = 'm3a' AND billing_reason = 'subscription_cycle';
INSERT INTO billing.invoices (number, user_id, subscription_id, billing_reason, currency, period_start, issued_at)
SELECT 'M3-9', 'm3a', s.id, 'subscription_cycle', 'usd', s.current_period_start, '2030-02-03'
  FROM billing.subscriptions s WHERE s.user_id = 'm3a' AND s.ended_at IS NULL;
SELECT number, billing_reason, deleted_at IS NOT NULL AS deleted FROM billing.invoices
 WHERE user_id = 'm3a' AND period_start = '2030-02-01' ORDER BY number;
-- a subscription's invoices are read by index
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM billing.invoices WHERE subscription_id = 1;
RESET enable_seqscan;
SET client_min_messages = warning;
DROP EXTENSION pageinspect;
RESET client_min_messages;
