-- The scale book: an application (users, rooms, participants) with billing
-- attached and a year of billing history, built set-based in one pass.
--
--   psql -v users=1000000 -v rooms=1000000 -f bench/scale/book.sql
--
-- The moment everything is measured at is :'due' (default 2026-12-01 00:00
-- UTC): at that instant 15% of the users (150,000 of 1,000,000) have a monthly
-- period ending, i.e. are due for maintenance. The book, per user u:
--   u % 100 <  60  Free, active (no period end)
--   u % 100 <  75  Pro monthly, active, period ending exactly at :'due'
--   u % 100 <  80  Pro monthly, active, period ending within the next 30 days
--   u % 100 <  85  Pro yearly, active, period ending within the next year
--   u % 100 <  95  Pro monthly, trialing, trial ending within the next 14 days
--   u % 100 <  97  Enterprise yearly, active
--   otherwise      Pro monthly, past_due since up to 20 days before :'due'
-- Every paid user also has the Free subscription it left (ended), monthly
-- payers a paid invoice and a payment for each of the last 12 months, yearly
-- payers one. app.rooms: :rooms rooms, owner scattered over the users; the
-- first fifth of the rooms hold 5 participants each, the rest were never
-- joined (fresh rooms for the first-participant benchmark).
--
-- Billing's own tables are loaded with session_replication_role = replica
-- (no audit rows for the generated history, no per-row FK checks), then
-- attached as an application would be. Reuse: see bench/scale/README.md.
\set ON_ERROR_STOP 1
\if :{?users}
\else
\set users 1000000
\endif
\if :{?rooms}
\else
\set rooms :users
\endif
\if :{?due}
\else
\set due '2026-12-01 00:00:00+00'
\endif
SET client_min_messages = warning;
SET maintenance_work_mem = '256MB';
SET work_mem = '64MB';
CREATE EXTENSION IF NOT EXISTS billing;

CREATE SCHEMA app;
CREATE TABLE app.users (id bigint NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE app.rooms (id bigint NOT NULL, owner_id bigint NOT NULL, name text NOT NULL, deleted_at timestamptz);
CREATE TABLE app.participants (id bigint NOT NULL, room_id bigint NOT NULL, user_id bigint, name text NOT NULL,
							   deleted_at timestamptz);

\echo '   users, rooms, participants'
INSERT INTO app.users
SELECT g, 'user' || g || '@example.com', :'due'::timestamptz - interval '400 days' + (g % 400) * interval '1 day'
  FROM generate_series(1, :users) g;
-- 7919 is prime to 10^k: every user owns the same number of rooms, scattered.
INSERT INTO app.rooms
SELECT g, 1 + (g::bigint * 7919) % :users, 'room ' || g, NULL FROM generate_series(1, :rooms) g;
INSERT INTO app.participants
SELECT (r - 1) * 5 + k, r, 1 + (r * 31 + k) % :users, 'guest', NULL
  FROM generate_series(1, :rooms / 5) r, generate_series(1, 5) k;
ALTER TABLE app.users ADD PRIMARY KEY (id);
ALTER TABLE app.rooms ADD PRIMARY KEY (id);
ALTER TABLE app.participants ADD PRIMARY KEY (id);
CREATE INDEX ON app.rooms (owner_id);
CREATE INDEX ON app.participants (room_id);
CREATE SEQUENCE app.participants_id_seq OWNED BY app.participants.id;
SELECT setval('app.participants_id_seq', (SELECT max(id) FROM app.participants));
ALTER TABLE app.participants ALTER id SET DEFAULT nextval('app.participants_id_seq');

\echo '   subscriptions'
SET session_replication_role = replica;
CREATE TEMP TABLE book_users AS
SELECT g AS u, g % 100 AS kind,
	   :'due'::timestamptz - interval '365 days' + (g % 300) * interval '1 day' AS joined
  FROM generate_series(1, :users) g;

-- the Free subscription every paid user left when upgrading
INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval, started_at,
								   current_period_start, canceled_at, ended_at, end_reason, created_at, updated_at)
SELECT u::text, 1, 'canceled', 0, 'usd', 'monthly', joined, joined, joined + interval '20 days',
	   joined + interval '20 days', 'plan_changed', joined, joined + interval '20 days'
  FROM book_users WHERE kind >= 60;

INSERT INTO billing.subscriptions (user_id, plan_id, status, price_cents, currency, billing_interval, started_at,
								   billing_anchor, current_period_start, current_period_end, trial_start, trial_end,
								   past_due_since, created_at, updated_at)
SELECT u::text, plan_id, status::billing.subscription_status, price, 'usd', interval_::billing.billing_interval,
	   started, anchor, period_start, period_end, trial_start, trial_end, past_due_since, started, started
  FROM (
	SELECT u, c.*, CASE WHEN kind < 60 THEN joined ELSE joined + interval '20 days' END AS started
	  FROM book_users
	 CROSS JOIN LATERAL (SELECT
		CASE WHEN kind < 60 THEN 1 WHEN kind < 80 OR kind >= 97 OR (kind >= 85 AND kind < 95) THEN 2
			 WHEN kind < 85 THEN 3 ELSE 4 END AS plan_id,
		CASE WHEN kind < 60 OR kind < 85 OR (kind >= 95 AND kind < 97) THEN 'active'
			 WHEN kind < 95 THEN 'trialing' ELSE 'past_due' END AS status,
		CASE WHEN kind < 60 THEN 0 WHEN kind < 80 OR kind >= 85 AND kind < 95 OR kind >= 97 THEN 2999
			 WHEN kind < 85 THEN 28800 ELSE 99900 END AS price,
		CASE WHEN kind < 80 OR (kind >= 85 AND kind < 95) OR kind >= 97 THEN 'monthly' ELSE 'yearly' END AS interval_,
		-- period end: at :'due', spread over 30 days, a year, or the trial's 14 days
		CASE WHEN kind < 60 THEN NULL
			 WHEN kind < 75 OR kind >= 97 THEN :'due'::timestamptz
			 WHEN kind < 80 THEN :'due'::timestamptz + (1 + u % 30) * interval '1 day' - interval '1 second' * (u % 3600)
			 WHEN kind < 85 OR (kind >= 95 AND kind < 97) THEN :'due'::timestamptz + (1 + u % 365) * interval '1 day'
			 ELSE :'due'::timestamptz + (1 + u % 14) * interval '1 day' END AS period_end
	 ) c0
	 CROSS JOIN LATERAL (SELECT c0.*,
		CASE WHEN c0.period_end IS NULL THEN NULL
			 WHEN c0.interval_ = 'monthly' THEN c0.period_end - interval '1 month' ELSE c0.period_end - interval '1 year' END
			 AS anchor) c1
	 CROSS JOIN LATERAL (SELECT c1.plan_id, c1.status, c1.price, c1.interval_, c1.period_end,
		CASE WHEN c1.status = 'trialing' THEN NULL ELSE c1.anchor END AS anchor,
		CASE WHEN c1.period_end IS NULL THEN joined
			 WHEN c1.status = 'trialing' THEN c1.period_end - interval '14 days'
			 ELSE GREATEST(c1.anchor, joined) END AS period_start,
		CASE WHEN c1.status = 'trialing' THEN c1.period_end - interval '14 days' END AS trial_start,
		CASE WHEN c1.status = 'trialing' THEN c1.period_end END AS trial_end,
		CASE WHEN c1.status = 'past_due' THEN :'due'::timestamptz - (u % 20) * interval '1 day' END AS past_due_since) c
  ) x;
-- the current ones' starts must not precede their trials
UPDATE billing.subscriptions SET started_at = trial_start, created_at = trial_start, updated_at = trial_start
 WHERE status = 'trialing' AND started_at > trial_start;

\echo '   invoices and payments'
-- one invoice per month of the last year (monthly payers) or one (yearly), each paid
INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency, period_start,
							  period_end, subtotal_cents, total_cents, amount_paid_cents, amount_due_cents, lines,
							  issued_at, paid_at, created_at, updated_at)
SELECT 'BOOK-' || s.id || '-' || m, s.user_id, s.id, 'paid', CASE WHEN m = 1 THEN 'subscription_create' ELSE 'subscription_cycle' END,
	   'usd', p.start, p.start + step, s.price_cents, s.price_cents, s.price_cents, 0,
	   jsonb_build_array(jsonb_build_object('description', 'period', 'amount_cents', s.price_cents, 'currency', 'usd')),
	   p.start, p.start + interval '1 hour', p.start, p.start
  FROM billing.subscriptions s
 CROSS JOIN LATERAL (SELECT CASE s.billing_interval WHEN 'monthly' THEN interval '1 month' ELSE interval '1 year' END AS step) i
 CROSS JOIN LATERAL generate_series(1, CASE s.billing_interval WHEN 'monthly' THEN 12 ELSE 1 END) m
 CROSS JOIN LATERAL (SELECT s.current_period_end - step * (CASE s.billing_interval WHEN 'monthly' THEN 13 - m ELSE 1 END)
							AS start) p
 WHERE s.ended_at IS NULL AND s.price_cents > 0 AND s.status IN ('active', 'past_due')
   AND p.start >= s.started_at;
INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status, paid_at,
							  created_at, updated_at)
SELECT i.user_id, i.subscription_id, i.id, i.total_cents, 'usd', 'succeeded', i.paid_at, i.paid_at, i.paid_at
  FROM billing.invoices i WHERE i.number LIKE 'BOOK-%';
-- where each payment went, as billing records it: the invoice it paid in full
INSERT INTO billing.ledger_entries (user_id, currency, kind, amount_cents, payment_id, invoice_id, at, created_at, updated_at)
SELECT p.user_id, p.currency, 'payment_to_invoice', p.amount_cents, p.id, p.invoice_id, p.paid_at, p.paid_at, p.paid_at
  FROM billing.payments p JOIN billing.invoices i ON i.id = p.invoice_id WHERE i.number LIKE 'BOOK-%';
SET session_replication_role = origin;
-- the subscription history a running install has (every subscription its
-- open interval), backfilled as the upgrade from 0.2.0 does it: loaded with
-- the triggers off, the book had none, and every lifecycle call's history
-- statement ran against a table that started empty (plans kept by a session
-- that began with it small scanned it whole, as it grew, until an ANALYZE)
\echo '   subscription history'
SELECT billing._history_backfill() AS subscriptions_with_history;
-- every subscriber's lock row, as a running install has it (a subscription
-- write makes it; the upgrade from 0.2.0 inserts it): loaded with the
-- triggers off, the book had none: nearly every lifecycle call measured made
-- its user's row, and maintenance inserted 1,000 rows per page into a table
-- its kept plan had seen empty (a sequential scan of all the lock rows
-- written so far for every page: its batches slowed as it went), and the
-- first room or participant of every owner inserted one
\echo '   user lock rows'
INSERT INTO billing.user_locks (user_id) SELECT DISTINCT s.user_id FROM billing.subscriptions s
ON CONFLICT (user_id) DO NOTHING;

\echo '   attaching billing to the application (users, rooms, participants)'
SELECT billing.attach_users('app.users', 'id') AS free_subscriptions_backfilled;
SELECT billing.attach_room_quota('app.rooms', 'owner_id') IS NOT NULL AS rooms_attached;
SELECT billing.attach_participant_quota('app.participants', 'room_id', 'app.rooms', 'owner_id') IS NOT NULL
	AS participants_attached;
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM app.users) AS users, (SELECT count(*) FROM app.rooms) AS rooms,
	   (SELECT count(*) FROM app.participants) AS participants,
	   (SELECT count(*) FROM billing.subscriptions) AS subscriptions,
	   (SELECT count(*) FROM billing.subscriptions WHERE ended_at IS NULL AND current_period_end = :'due') AS due_at_once,
	   (SELECT count(*) FROM billing.invoices) AS invoices, (SELECT count(*) FROM billing.payments) AS payments;
