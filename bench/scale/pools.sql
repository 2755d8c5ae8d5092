-- Pools the lifecycle benchmark draws from, one row per use (see run.sh):
-- Free users (start_trial, subscribe), trialing subscriptions (record_payment),
-- active paid subscriptions (cancel). Each transaction takes the next row.
\set ON_ERROR_STOP 1
CREATE SCHEMA bench;
CREATE TABLE bench.free AS
SELECT row_number() OVER (ORDER BY s.user_id::bigint) AS n, s.user_id
  FROM billing.subscriptions s WHERE s.ended_at IS NULL AND s.price_cents = 0;
CREATE TABLE bench.trialing AS
SELECT row_number() OVER (ORDER BY s.id) AS n, s.id FROM billing.subscriptions s
 WHERE s.ended_at IS NULL AND s.status = 'trialing';
-- (cancel is dated at the due moment, and billing refuses an operation dated
-- before a subscription's latest change: some of the book's last payments are
-- an hour after their period start, i.e. after the due moment; and a period
-- ending at the due moment is excluded: billing renews it before canceling,
-- an invoice and a second update the plain statement does not write, which
-- made 57% of billing's cancels two operations against plain SQL's one)
CREATE TABLE bench.paid AS
SELECT row_number() OVER (ORDER BY s.id) AS n, s.id FROM billing.subscriptions s
 WHERE s.ended_at IS NULL AND s.status = 'active' AND s.price_cents > 0 AND NOT s.cancel_at_period_end
   AND s.current_period_start <= '2026-12-01 00:00+00' AND s.current_period_end > '2026-12-01 00:00+00'
   AND NOT EXISTS (SELECT FROM billing.payments p WHERE p.subscription_id = s.id AND p.paid_at > '2026-12-01 00:00+00');
ALTER TABLE bench.free ADD PRIMARY KEY (n);
ALTER TABLE bench.trialing ADD PRIMARY KEY (n);
ALTER TABLE bench.paid ADD PRIMARY KEY (n);
CREATE SEQUENCE bench.free_seq;
CREATE SEQUENCE bench.trialing_seq;
CREATE SEQUENCE bench.paid_seq;
-- the bulk start_trial benchmark takes Free users from the end of the pool
CREATE SEQUENCE bench.bulk_seq;
SELECT setval('bench.bulk_seq', (SELECT count(*) / 2 FROM bench.free));

-- quota benchmarks: rooms never joined (the first fifth of the rooms are), and
-- a bare copy of the participants table, same indexes, no trigger
CREATE SEQUENCE bench.fresh_room;
SELECT setval('bench.fresh_room', (SELECT count(*) / 5 FROM app.rooms) + 1);
CREATE SEQUENCE bench.fresh_room_bare;
SELECT setval('bench.fresh_room_bare', (SELECT count(*) / 5 FROM app.rooms) + 1);
CREATE TABLE bench.participants_bare (LIKE app.participants INCLUDING ALL);
INSERT INTO bench.participants_bare SELECT * FROM app.participants;
CREATE SEQUENCE bench.participants_bare_id_seq;
SELECT setval('bench.participants_bare_id_seq', (SELECT max(id) FROM bench.participants_bare));
ALTER TABLE bench.participants_bare ALTER id SET DEFAULT nextval('bench.participants_bare_id_seq');
-- steady state: the counters of rooms 1..10,000 hold their cached limit
INSERT INTO app.participants (room_id, user_id, name) SELECT r, 1, 'warm' FROM generate_series(1, LEAST(10000, (SELECT count(*) / 5 FROM app.rooms))) r;
INSERT INTO bench.participants_bare (room_id, user_id, name) SELECT r, 1, 'warm' FROM generate_series(1, LEAST(10000, (SELECT count(*) / 5 FROM app.rooms))) r;
VACUUM ANALYZE;
