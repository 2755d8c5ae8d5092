-- Usage: the rollup reads only billing.usage_pending (what arrived since the
-- last one), never updates the records, and usage() and usage_trends() agree
-- before and after it, the quota triggers' counts included.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
CREATE EXTENSION billing;
SET timezone = 'Asia/Kolkata';  -- days are UTC days all the same
CREATE TABLE usage_users (id text PRIMARY KEY);
CREATE TABLE usage_rooms (id bigserial PRIMARY KEY, owner_id text REFERENCES usage_users);
SELECT billing.attach_users('usage_users', 'id');
SELECT billing.attach_room_quota('usage_rooms', 'owner_id');
INSERT INTO usage_users VALUES ('u1'), ('u2');
-- two rooms today: counted by the quota trigger in its counter row, not as records
INSERT INTO usage_rooms (owner_id) VALUES ('u1'), ('u1');
-- records: 5 + 7 on 1 Jan (UTC; 23:30 UTC is 2 Jan in Kolkata), 11 on 2 Jan, one soft-deleted (100)
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at) VALUES
	('u1', 'api_calls', 5, '2026-01-01 10:00+00'), ('u1', 'api_calls', 7, '2026-01-01 23:30+00'),
	('u1', 'api_calls', 11, '2026-01-02 00:30+00'), ('u2', 'api_calls', 100, '2026-01-01 12:00+00');
UPDATE billing.usage_records SET deleted_at = '2026-01-03 00:00+00' WHERE quantity = 100;
SELECT count(*) AS pending FROM billing.usage_pending;  -- 3: the deleted one is not pending

CREATE FUNCTION pg_temp.agree(day0 timestamptz, day1 timestamptz) RETURNS TABLE (metric text, usage bigint, trends numeric)
LANGUAGE sql AS $$
	SELECT m, billing.usage('u1', m, day0, day1),
		   (SELECT COALESCE(sum(t.value), 0) FROM billing.usage_trends(day0, day1, 'day') t WHERE t.metric = m)
	  FROM unnest(ARRAY['api_calls', 'rooms_created']) m
$$;
-- 1 Jan: 5 + 7 = 12; 2 Jan: 11
SELECT * FROM pg_temp.agree('2026-01-01 00:00+00', '2026-01-02 00:00+00');
SELECT * FROM pg_temp.agree('2026-01-02 00:00+00', '2026-01-03 00:00+00');
-- today: the two rooms the trigger counted (0.2.0's usage_trends left them out: 0)
SELECT * FROM pg_temp.agree(date_trunc('day', now(), 'UTC'), date_trunc('day', now(), 'UTC') + interval '1 day');

-- the rollup up to 2 Jan takes the two records of 1 Jan; up to tomorrow, the rest
SELECT billing.rollup_usage('2026-01-02 00:00+00') AS moved;
SELECT billing.rollup_usage('2026-01-02 00:00+00') AS again;  -- nothing new: 0
SELECT billing.rollup_usage(date_trunc('day', now(), 'UTC') + interval '1 day') AS moved;
SELECT count(*) AS pending FROM billing.usage_pending;
SELECT user_id, metric, CASE WHEN day = (now() AT TIME ZONE 'UTC')::date THEN 'today' ELSE day::text END AS day, quantity
  FROM billing.usage_daily ORDER BY usage_daily.day, metric;
-- the records were not touched (the one updated is the soft-deleted one)
SELECT count(*) FILTER (WHERE rolled_up) AS marked, count(*) FILTER (WHERE updated_at <> created_at) AS updated
  FROM billing.usage_records;
-- and the figures are the same
SELECT * FROM pg_temp.agree('2026-01-01 00:00+00', '2026-01-02 00:00+00');
SELECT * FROM pg_temp.agree('2026-01-02 00:00+00', '2026-01-03 00:00+00');
SELECT * FROM pg_temp.agree(date_trunc('day', now(), 'UTC'), date_trunc('day', now(), 'UTC') + interval '1 day');

-- A room counter rolling over a day writes the previous day's count for the
-- room's owner, and nothing for a room without one (its counter's owner is
-- ''): one participant yesterday in u2's room and one in an ownerless room
-- (moved back a day by hand), then one more in each today.
CREATE TABLE usage_participants (id bigserial PRIMARY KEY, room_id bigint REFERENCES usage_rooms);
SELECT billing.attach_participant_quota('usage_participants', 'room_id', 'usage_rooms', 'owner_id');
INSERT INTO usage_rooms (id, owner_id) VALUES (100, 'u2'), (101, NULL);
INSERT INTO usage_participants (room_id) VALUES (100), (101);
UPDATE billing.quota_counters SET usage_day = usage_day - 1 WHERE key IN ('100', '101') AND usage_pending > 0;
SELECT key, owner_id, usage_pending FROM billing.quota_counters WHERE key IN ('100', '101') ORDER BY key;
INSERT INTO usage_participants (room_id) VALUES (100), (101);
-- u2: 1 yesterday (kept as pending usage of that day by the rollover, for
-- the rollup: attack finding 5.3), 1 today (still in the counter);
-- nobody's: nothing written (its count today stays in its counter, which
-- the rollup skips)
SELECT user_id, metric, (now() AT TIME ZONE 'UTC')::date - (recorded_at AT TIME ZONE 'UTC')::date AS days_ago, quantity
  FROM billing.usage_pending WHERE metric = 'participants_joined' ORDER BY user_id, recorded_at;
SELECT key, owner_id, usage_pending FROM billing.quota_counters WHERE key IN ('100', '101') ORDER BY key;
SELECT billing.rollup_usage(date_trunc('day', now(), 'UTC') + interval '1 day') AS moved;
SELECT user_id, metric, (now() AT TIME ZONE 'UTC')::date - day AS days_ago, quantity
  FROM billing.usage_daily WHERE metric = 'participants_joined' ORDER BY user_id, day;
SELECT count(*) AS written_for_nobody FROM billing.usage_daily WHERE user_id = '';

-- The rollup finds counters with pending usage among those whose day it has
-- not closed (an index range on usage_day, never every counter). That
-- rollup, up to tomorrow, closed every counter of a day before tomorrow:
-- usage_day NULL, pending 0 (nobody's 1 in room 101 dropped, as a new day
-- drops it). A join into a closed counter opens it again for its day
-- (through the slow path: the fast path counts only into today's counter),
-- and a rollup up to today takes its count and keeps the day open; the next
-- join counts into it in place.
SELECT key, owner_id, usage_day, usage_pending FROM billing.quota_counters
 WHERE key IN ('u1', 'u2', '100', '101') ORDER BY key;
INSERT INTO usage_participants (room_id) VALUES (100), (101);
SELECT key, owner_id, usage_day = (now() AT TIME ZONE 'UTC')::date AS today, usage_pending FROM billing.quota_counters
 WHERE key IN ('100', '101') ORDER BY key;
SELECT billing.rollup_usage() AS moved;  -- room 100's 1 (nobody's is not taken)
INSERT INTO usage_participants (room_id) VALUES (100);
SELECT key, owner_id, usage_day = (now() AT TIME ZONE 'UTC')::date AS today, usage_pending FROM billing.quota_counters
 WHERE key IN ('100', '101') ORDER BY key;
-- u2 today: 1 (rolled up by the rollup to tomorrow) + 1 (rolled up now) + 1
-- (in the counter): 3
SELECT billing.usage('u2', 'participants_joined', date_trunc('day', now(), 'UTC'),
					 date_trunc('day', now(), 'UTC') + interval '1 day') AS u2_joins_today;

DROP TABLE usage_participants, usage_rooms, usage_users;
