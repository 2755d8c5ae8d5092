-- The quota triggers change billing.quota_counters in place, through heapam.
-- Whatever path an update takes (HOT or not), every index must stay complete
-- and every count exact.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
CREATE EXTENSION IF NOT EXISTS amcheck;
SET timezone = 'UTC';
CREATE TABLE users (id bigint PRIMARY KEY);
CREATE TABLE rooms (id bigserial PRIMARY KEY, owner_id bigint, deleted_at timestamptz);
INSERT INTO users SELECT g FROM generate_series(1, 50) g;
SELECT billing.attach_users('users', 'id');
SELECT billing.attach_room_quota('rooms', 'owner_id');

-- Counts must equal the rows the application has, per owner.
CREATE FUNCTION counts_match() RETURNS boolean LANGUAGE sql AS $$
	SELECT NOT EXISTS (
		SELECT FROM (SELECT owner_id::text AS key, count(*) AS n FROM rooms WHERE deleted_at IS NULL GROUP BY 1) r
		FULL JOIN (SELECT key, used FROM billing.quota_counters WHERE used > 0) q USING (key)
		WHERE r.n IS DISTINCT FROM q.used)
$$;
-- Every index of the counters holds every live version: amcheck's
-- heapallindexed for the btrees; and every counter is found through the
-- primary key, as the trigger looks counters up.
CREATE FUNCTION counter_indexes_complete() RETURNS boolean LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
	i regclass;
BEGIN
	FOR i IN SELECT indexrelid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
			  JOIN pg_am am ON am.oid = c.relam
			 WHERE x.indrelid = 'billing.quota_counters'::regclass AND am.amname = 'btree' LOOP
		PERFORM bt_index_check(i, heapallindexed => true);
	END LOOP;
	RETURN NOT EXISTS (SELECT FROM billing.quota_counters q
					   WHERE NOT EXISTS (SELECT FROM billing.quota_counters h WHERE h.attachment_id = q.attachment_id
														AND h.key = q.key AND h.ctid = q.ctid));
END
$$;
-- (the probe goes through the primary key)
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
EXPLAIN (COSTS OFF) SELECT FROM billing.quota_counters q
	WHERE NOT EXISTS (SELECT FROM billing.quota_counters h WHERE h.attachment_id = q.attachment_id
						AND h.key = q.key AND h.ctid = q.ctid);
RESET enable_seqscan;
RESET enable_bitmapscan;
RESET enable_hashjoin;
RESET enable_mergejoin;

-- == The usual path: HOT updates
INSERT INTO rooms (owner_id) SELECT 1 + g % 50 FROM generate_series(1, 100) g;   -- two rooms each
BEGIN;  -- pg_stat_xact_* counts this transaction's updates
INSERT INTO rooms (owner_id) VALUES (1);
SELECT n_tup_hot_upd > 0 AS hot_updates FROM pg_stat_xact_user_tables WHERE relid = 'billing.quota_counters'::regclass;
COMMIT;
SELECT counts_match(), counter_indexes_complete();

-- == Updates that cannot be HOT (an index on a changing column) keep every index
CREATE INDEX quota_counters_used ON billing.quota_counters (used);
INSERT INTO rooms (owner_id) VALUES (2);
INSERT INTO rooms (owner_id) VALUES (2);    -- the fourth: refused
\echo :LAST_ERROR_SQLSTATE
DELETE FROM rooms WHERE owner_id = 3 AND id = (SELECT min(id) FROM rooms WHERE owner_id = 3);
INSERT INTO rooms (owner_id) VALUES (3), (3);
SELECT counts_match(), counter_indexes_complete();
-- found through the index on used: the new versions were indexed
SET enable_seqscan = off;
SELECT key, used FROM billing.quota_counters WHERE used = 3 ORDER BY key COLLATE "C";
RESET enable_seqscan;
DROP INDEX billing.quota_counters_used;
-- an index the fast path cannot keep (expression, partial, deferrable) sends
-- every change through the slow path's UPDATE, which keeps any index
CREATE INDEX quota_counters_expression ON billing.quota_counters ((used + 1)) WHERE used > 0;
INSERT INTO rooms (owner_id) VALUES (4);
DELETE FROM rooms WHERE id = (SELECT max(id) FROM rooms WHERE owner_id = 4);
INSERT INTO rooms (owner_id) VALUES (4);
SET enable_seqscan = off;
SELECT key, used FROM billing.quota_counters WHERE used + 1 = 4 AND used > 0 AND key IN ('2', '3', '4') ORDER BY key COLLATE "C";
RESET enable_seqscan;
SELECT counts_match(), counter_indexes_complete();
DROP INDEX billing.quota_counters_expression;
INSERT INTO rooms (owner_id) VALUES (9);
SELECT counts_match(), counter_indexes_complete();

-- == One transaction, many changes of one counter
BEGIN ISOLATION LEVEL REPEATABLE READ;
DELETE FROM rooms WHERE owner_id = 5;
INSERT INTO rooms (owner_id) VALUES (5), (5), (5);
SAVEPOINT before_fourth;
INSERT INTO rooms (owner_id) VALUES (5);
ROLLBACK TO before_fourth;
DELETE FROM rooms WHERE id = (SELECT max(id) FROM rooms WHERE owner_id = 5);
INSERT INTO rooms (owner_id) VALUES (5);
COMMIT;
SELECT used FROM billing.quota_counters WHERE key = '5';
SELECT counts_match(), counter_indexes_complete();

-- == Deleting more rows than were counted never goes below zero
ALTER TABLE rooms DISABLE TRIGGER USER;
INSERT INTO rooms (owner_id) VALUES (6), (6);
ALTER TABLE rooms ENABLE TRIGGER USER;
DELETE FROM rooms WHERE owner_id = 6;
SELECT used FROM billing.quota_counters WHERE key = '6';
SELECT key, counted_before, counted_now FROM billing.reconcile_quotas();

-- == A counter that is stale (plan changed) goes through the slow path
SELECT status FROM billing.start_trial('7', 'pro_monthly');
SELECT cap_valid_until = '-infinity' AS cache_cleared FROM billing.quota_counters WHERE key = '7';
INSERT INTO rooms (owner_id) VALUES (7), (7);
SELECT used, cap FROM billing.quota_counters WHERE key = '7';
SELECT counts_match(), counter_indexes_complete();

-- == INSERT ... ON CONFLICT: only rows really inserted count
SELECT min(id) AS taken FROM rooms WHERE owner_id = 10 \gset
INSERT INTO rooms (id, owner_id) VALUES (:taken, 10) ON CONFLICT (id) DO NOTHING;
INSERT INTO rooms (id, owner_id) VALUES (:taken, 10) ON CONFLICT (id) DO UPDATE SET deleted_at = NULL;
INSERT INTO rooms (id, owner_id) VALUES (:taken, 11) ON CONFLICT (id) DO UPDATE SET owner_id = EXCLUDED.owner_id;
INSERT INTO rooms (id, owner_id) VALUES (:taken, 12), (nextval('rooms_id_seq'), 12) ON CONFLICT (id) DO NOTHING;
SELECT key, used FROM billing.quota_counters WHERE key IN ('10', '11', '12') ORDER BY key COLLATE "C";
SELECT counts_match();

-- == A column changed by the application's own BEFORE trigger counts too
ALTER TABLE rooms ADD COLUMN archived boolean NOT NULL DEFAULT false;
CREATE FUNCTION rooms_archive() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.archived AND NOT OLD.archived THEN
		NEW.deleted_at := now();
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER archive BEFORE UPDATE ON rooms FOR EACH ROW EXECUTE FUNCTION rooms_archive();
UPDATE rooms SET archived = true WHERE id = (SELECT min(id) FROM rooms WHERE owner_id = 12);
SELECT used FROM billing.quota_counters WHERE key = '12';
SELECT counts_match();

-- == Whatever a DBA adds to billing.quota_counters is kept, as by an UPDATE:
-- the fast path steps aside (to the slow path's UPDATE) for a trigger, an
-- extra CHECK, a generated column, a changed column type; a publication of
-- updates without a replica identity refuses it as it refuses an UPDATE.
INSERT INTO rooms (owner_id) VALUES (101);
SELECT used AS used_before, updated_at AS updated_before FROM billing.quota_counters WHERE key = '101' \gset
INSERT INTO rooms (owner_id) VALUES (101);
SELECT used = :used_before + 1 AS counted, updated_at > :'updated_before' AS updated_at_moved
  FROM billing.quota_counters WHERE key = '101';
CREATE TABLE public.counter_writes (n bigint);
GRANT INSERT ON public.counter_writes TO billing_owner;
CREATE FUNCTION count_counter_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.counter_writes VALUES (1);
	RETURN NEW;
END $$;
CREATE TRIGGER dba_watch AFTER UPDATE ON billing.quota_counters FOR EACH ROW EXECUTE FUNCTION count_counter_writes();
INSERT INTO rooms (owner_id) VALUES (102);
INSERT INTO rooms (owner_id) VALUES (102);
SELECT count(*) > 0 AS dba_trigger_fired FROM public.counter_writes;
DROP TRIGGER dba_watch ON billing.quota_counters;
ALTER TABLE billing.quota_counters ADD CONSTRAINT dba_small CHECK (used < 2) NOT VALID;
INSERT INTO rooms (owner_id) VALUES (103);
\set VERBOSITY terse
INSERT INTO rooms (owner_id) VALUES (103);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
ALTER TABLE billing.quota_counters DROP CONSTRAINT dba_small;
ALTER TABLE billing.quota_counters ADD COLUMN used_twice bigint GENERATED ALWAYS AS (used * 2) STORED;
INSERT INTO rooms (owner_id) VALUES (104);
INSERT INTO rooms (owner_id) VALUES (104);
SELECT used, used_twice FROM billing.quota_counters WHERE key = '104';
ALTER TABLE billing.quota_counters DROP COLUMN used_twice;
ALTER TABLE billing.quota_counters ALTER COLUMN usage_pending TYPE numeric;
INSERT INTO rooms (owner_id) VALUES (105);
INSERT INTO rooms (owner_id) VALUES (105);
SELECT used, usage_pending FROM billing.quota_counters WHERE key = '105';
ALTER TABLE billing.quota_counters ALTER COLUMN usage_pending TYPE bigint;
SET client_min_messages = error;
CREATE PUBLICATION counters_pub FOR TABLE billing.quota_counters;
RESET client_min_messages;
ALTER TABLE billing.quota_counters REPLICA IDENTITY NOTHING;
INSERT INTO rooms (owner_id) VALUES (106);
INSERT INTO rooms (owner_id) VALUES (106);
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE billing.quota_counters REPLICA IDENTITY DEFAULT;
DROP PUBLICATION counters_pub;
INSERT INTO rooms (owner_id) VALUES (106);
SELECT key, used FROM billing.quota_counters WHERE key IN ('101', '102', '103', '104', '105', '106') ORDER BY key;
SELECT counts_match(), counter_indexes_complete();
DROP TABLE public.counter_writes;
DROP FUNCTION count_counter_writes();

-- == billing._quota_prepare: the trigger's slow path as a function
-- Owner 900 is unknown to billing: no subscription, so Free, cached until
-- something is written (infinity); the counter is created with 0 rows used.
SELECT p.used, p.limits, p.plan_code, p.plan_name, p.cap_valid_until, p.owner_id
  FROM billing.attachments a, billing._quota_prepare(a.id, '900', '2030-01-01 00:00+00', '900') p
 WHERE a.relation = 'rooms'::regclass;
SELECT key, owner_id, used, usage_day FROM billing.quota_counters WHERE key = '900';
-- no counter yet and no owner given: all NULL (the trigger then looks the owner up)
SELECT p.* IS NULL AS asks_for_owner
  FROM billing.attachments a, billing._quota_prepare(a.id, '901', '2030-01-01 00:00+00', NULL) p
 WHERE a.relation = 'rooms'::regclass;
SELECT count(*) AS created FROM billing.quota_counters WHERE key = '901';
\set VERBOSITY terse
SELECT * FROM billing._quota_prepare(-1, '900', '2030-01-01 00:00+00', '900');
\set VERBOSITY default
DELETE FROM billing.quota_counters WHERE key = '900';

-- == A dropped attached table takes its attachment and counters along (its
-- pending usage is kept): quota() and reconcile_quotas() never read it again
-- (billing counts rooms in one table: rooms is detached first)
SELECT billing.detach('rooms');
CREATE TABLE rooms_v1 (id bigserial PRIMARY KEY, owner_id bigint);
SELECT billing.attach_room_quota('rooms_v1', 'owner_id') AS v1_counted;
INSERT INTO rooms_v1 (owner_id) VALUES (77), (77), (77);
SELECT used FROM billing.quota('77', 'rooms');
DROP TABLE rooms_v1;
SELECT count(*) AS attachments_of_dropped_tables FROM billing.attachments a
 WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = a.relation::oid);
SELECT used FROM billing.quota('77', 'rooms');
-- kept as pending usage of its day (attack finding 5.3), rolled up like a record
SELECT sum(quantity) AS rooms_created_kept FROM billing.usage_pending WHERE user_id = '77' AND metric = 'rooms_created';
SELECT count(*) AS repaired FROM billing.reconcile_quotas();

-- == The extension made again in this session: the triggers find the new table
DROP EXTENSION billing CASCADE;
CREATE EXTENSION billing;
SELECT billing.attach_users('users', 'id') AS users_attached;
SELECT billing.attach_room_quota('rooms', 'owner_id') AS rooms_counted;
INSERT INTO rooms (owner_id) VALUES (8);
SELECT counts_match(), counter_indexes_complete();

DROP TABLE rooms, users;
DROP FUNCTION counts_match(), counter_indexes_complete(), rooms_archive();
DROP EXTENSION amcheck;

-- == A room given to another owner: the joins its counter holds that no
-- rollup has taken yet are the old owner's (final review of session 7, F6:
-- the rollup billed them to the new owner). Owner 41's room gets a
-- participant, then goes to 42: the join is 41's, and a join after the move
-- is 42's.
CREATE TABLE mu_rooms (id int PRIMARY KEY, owner_id int);
CREATE TABLE mu_participants (id serial PRIMARY KEY, room_id int REFERENCES mu_rooms);
SELECT billing.attach_participant_quota('mu_participants', 'room_id', 'mu_rooms', 'owner_id');
INSERT INTO mu_rooms VALUES (30, 41);
INSERT INTO mu_participants (room_id) VALUES (30);
UPDATE mu_rooms SET owner_id = 42 WHERE id = 30;
INSERT INTO mu_participants (room_id) VALUES (30);
SELECT q.owner_id, q.used, q.usage_pending FROM billing.quota_counters q WHERE q.key = '30';
SELECT billing.rollup_usage(now() + interval '2 days') >= 1 AS rolled_up;
SELECT user_id, metric, quantity FROM billing.usage_daily
 WHERE metric = 'participants_joined' AND user_id IN ('41', '42') ORDER BY user_id;
SELECT billing.detach('mu_participants');
DROP TABLE mu_participants, mu_rooms;
