-- Scale audit (session 10): over_quota() asks the core for an owner's plan
-- (effective_plan, a call per owner) only for counters above the lowest
-- limit any plan sets for their quota, and once per owner: it called it for
-- every counter of every user (40 s at 200,000 users, bench/scale/audit.py),
-- where nearly all are within Free's limits. Counted with
-- pg_stat_xact_user_functions; the report itself is unchanged.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP TABLE IF EXISTS oq_participants, oq_rooms;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE TABLE oq_rooms (id bigint PRIMARY KEY, owner_id text NOT NULL);
CREATE TABLE oq_participants (id bigserial PRIMARY KEY, room_id bigint NOT NULL REFERENCES oq_rooms);
SELECT billing.attach_room_quota('oq_rooms', 'owner_id');
SELECT billing.attach_participant_quota('oq_participants', 'room_id', 'oq_rooms', 'owner_id');
-- 100 Free owners with 2 rooms of 3 participants each: within every plan's limits
INSERT INTO oq_rooms SELECT g, 'oq-' || (g % 100) FROM generate_series(1, 200) g;
INSERT INTO oq_participants (room_id) SELECT r FROM generate_series(1, 200) r, generate_series(1, 3);
-- over Free's limits (written with enforcement off, as after a downgrade):
-- 'oq-big' with 5 rooms, one of them with 60 participants; 'oq-pro' the
-- same on Pro (within its limits)
SELECT count(*) FROM billing.subscribe('oq-pro', 'pro_monthly', '2026-01-01', false) s,
	LATERAL billing.record_payment(s.id, 2999, 'usd', true, '2026-01-01') p;
SET billing.enforce_quotas = off;
INSERT INTO oq_rooms SELECT 1000 + g, 'oq-big' FROM generate_series(1, 5) g;
INSERT INTO oq_rooms SELECT 2000 + g, 'oq-pro' FROM generate_series(1, 5) g;
INSERT INTO oq_participants (room_id) SELECT r FROM (VALUES (1001), (2001)) v(r), generate_series(1, 60);
RESET billing.enforce_quotas;

SET track_functions = 'all';
-- (calls not reported yet may show in the view: the difference is counted)
CREATE FUNCTION pg_temp.plan_calls() RETURNS bigint LANGUAGE sql AS $$
	SELECT COALESCE((SELECT calls FROM pg_stat_xact_user_functions
					  WHERE schemaname = 'billing' AND funcname = 'effective_plan'), 0)
$$;
BEGIN;
SELECT pg_temp.plan_calls() AS before \gset
SELECT * FROM billing.over_quota('2026-01-15');
-- two owners above the lowest limits: two plans looked up, not one per counter
SELECT pg_temp.plan_calls() - :before AS plans_looked_up;
COMMIT;
-- nobody above the lowest limits: no plan looked up at all
SET billing.enforce_quotas = off;
DELETE FROM oq_participants WHERE room_id IN (1001, 2001);
DELETE FROM oq_rooms WHERE id > 1000;
RESET billing.enforce_quotas;
BEGIN;
SELECT pg_temp.plan_calls() AS before \gset
SELECT * FROM billing.over_quota('2026-01-15');
SELECT pg_temp.plan_calls() - :before AS plans_looked_up;
COMMIT;
-- (the tables go: other tests grant on every table of the schema)
DROP TABLE oq_participants, oq_rooms;
