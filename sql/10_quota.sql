-- Quotas enforced by the C++ triggers on the application's own tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE TABLE users (id bigserial PRIMARY KEY, email text);
CREATE TABLE rooms (id bigserial PRIMARY KEY, owner_id bigint REFERENCES users, name text, deleted_at timestamptz);
CREATE TABLE participants (id bigserial PRIMARY KEY, room_id bigint REFERENCES rooms ON DELETE CASCADE, name text,
						   deleted_at timestamptz);
INSERT INTO users (email) SELECT 'user' || i || '@example.com' FROM generate_series(1, 4) i;
INSERT INTO rooms (owner_id, name) VALUES (4, 'before attach'), (4, 'before attach 2');
SELECT billing.attach_users('users', 'id');
SELECT billing.attach_room_quota('rooms', owner_column => 'owner_id') AS rooms_counted;
SELECT billing.attach_participant_quota('participants', room_column => 'room_id', rooms => 'rooms',
										room_owner_column => 'owner_id') AS participants_counted;
SELECT key, owner_id, used FROM billing.quota_counters ORDER BY attachment_id, key;

-- == A free user creates rooms until refused (limit 3)
INSERT INTO rooms (owner_id, name) VALUES (1, 'a');
INSERT INTO rooms (owner_id, name) VALUES (1, 'b');
INSERT INTO rooms (owner_id, name) VALUES (1, 'c');
INSERT INTO rooms (owner_id, name) VALUES (1, 'd');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rooms_of_1 FROM rooms WHERE owner_id = 1;
SELECT * FROM billing.quota('1', 'rooms');
-- the statement fails; the rest of the transaction is untouched
BEGIN;
INSERT INTO users (email) VALUES ('in the same transaction');
SAVEPOINT s;
INSERT INTO rooms (owner_id, name) VALUES (1, 'e');
ROLLBACK TO s;
INSERT INTO rooms (owner_id, name) VALUES (2, 'fine');
COMMIT;
SELECT count(*) AS kept FROM users WHERE email = 'in the same transaction';
-- a multi-row insert that would cross the limit fails as a whole
INSERT INTO rooms (owner_id, name) VALUES (2, 'x'), (2, 'y'), (2, 'z');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rooms_of_2 FROM rooms WHERE owner_id = 2;
INSERT INTO rooms (owner_id, name) SELECT 2, 'sel' || i FROM generate_series(1, 2) i;
SELECT count(*) AS rooms_of_2 FROM rooms WHERE owner_id = 2;
INSERT INTO rooms (owner_id, name) SELECT 2, 'sel' FROM generate_series(1, 1);
\echo :LAST_ERROR_SQLSTATE
-- COPY is checked too
COPY rooms (owner_id, name) FROM stdin;
3	copy1
3	copy2
3	copy3
3	copy4
\.
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rooms_of_3 FROM rooms WHERE owner_id = 3;
INSERT INTO rooms (owner_id, name) VALUES (3, 'r1'), (3, 'r2');

-- == Every way a row stops or starts counting
DELETE FROM rooms WHERE owner_id = 1 AND name = 'a';
INSERT INTO rooms (owner_id, name) VALUES (1, 'after delete');
UPDATE rooms SET deleted_at = now() WHERE owner_id = 1 AND name = 'b';   -- soft delete frees a slot
INSERT INTO rooms (owner_id, name) VALUES (1, 'after soft delete');
UPDATE rooms SET deleted_at = NULL WHERE owner_id = 1 AND name = 'b';    -- restoring over quota is refused
\echo :LAST_ERROR_SQLSTATE
UPDATE rooms SET owner_id = 1 WHERE owner_id = 4 AND name = 'before attach';   -- moving to a full owner too
\echo :LAST_ERROR_SQLSTATE
UPDATE rooms SET name = 'renamed' WHERE owner_id = 1 AND name = 'c';      -- other columns: no check
UPDATE rooms SET owner_id = 4 WHERE owner_id = 1 AND name = 'renamed';    -- moving away frees a slot
SELECT owner_id, count(*) FILTER (WHERE deleted_at IS NULL) AS live, count(*) AS all_rows FROM rooms GROUP BY 1 ORDER BY 1;
SELECT key, used FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.kind = 'rooms' ORDER BY key;

-- == Participants per room (limit 50 on Free)
SELECT id AS room FROM rooms WHERE owner_id = 3 ORDER BY id LIMIT 1 \gset
INSERT INTO participants (room_id, name) SELECT :room, 'p' || i FROM generate_series(1, 50) i;
INSERT INTO participants (room_id, name) VALUES (:room, 'one too many');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.quota('3', 'participants_per_room');
-- moving a participant to another room counts in the new room
SELECT id AS other_room FROM rooms WHERE owner_id = 3 ORDER BY id OFFSET 1 LIMIT 1 \gset
UPDATE participants SET room_id = :other_room WHERE room_id = :room AND name = 'p1';
INSERT INTO participants (room_id, name) VALUES (:room, 'took the freed place');
SELECT room_id = :room AS first_room, count(*) FROM participants GROUP BY 1 ORDER BY 1;
-- soft-deleting a participant frees a place
UPDATE participants SET deleted_at = now() WHERE room_id = :room AND name = 'p2';
INSERT INTO participants (room_id, name) VALUES (:room, 'after soft delete');
-- deleting a room cascades to its participants and their counter follows
DELETE FROM rooms WHERE id = :other_room;
SELECT used FROM billing.quota_counters WHERE key = :'other_room' AND attachment_id = 3;
-- TRUNCATE empties the counters
TRUNCATE participants;
SELECT sum(used) AS participants_counted FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.kind = 'participants';

-- == The plan decides: a trial lifts the limit, its end brings it back
SELECT status FROM billing.start_trial('1', 'pro_monthly');
INSERT INTO rooms (owner_id, name) SELECT 1, 'pro' || i FROM generate_series(1, 5) i;
SELECT * FROM billing.quota('1', 'rooms');
SELECT billing.has_feature('1', 'recording') AS pro_records, billing.has_feature('2', 'recording') AS free_records;
SELECT status FROM billing.cancel((SELECT id FROM billing.subscriptions WHERE user_id = '1' AND ended_at IS NULL), false);
-- back on Free with 8 rooms: kept, but no more can be added
INSERT INTO rooms (owner_id, name) VALUES (1, 'over');
\echo :LAST_ERROR_SQLSTATE
SELECT user_id, quota, "limit", used FROM billing.over_quota() ORDER BY 1, 2;

-- == Enforcement off: only for superusers and billing_admin
CREATE ROLE regress_quota_app LOGIN;
GRANT billing_app TO regress_quota_app;
GRANT ALL ON rooms, participants, users TO regress_quota_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO regress_quota_app;
SET ROLE regress_quota_app;
-- user 3 has one room left after the deletes above; the app fills the quota
INSERT INTO rooms (owner_id, name) VALUES (3, 'as the app 1');     -- counters work without rights on billing tables
INSERT INTO rooms (owner_id, name) VALUES (3, 'as the app 2');
INSERT INTO rooms (owner_id, name) VALUES (3, 'as the app, over');
\echo :LAST_ERROR_SQLSTATE
SET billing.enforce_quotas = off;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO billing.quota_counters (attachment_id, key, owner_id) VALUES (1, 'forged', 'x');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT billing_admin TO regress_quota_app;
SET ROLE regress_quota_app;
SET billing.enforce_quotas = off;
INSERT INTO rooms (owner_id, name) VALUES (3, 'maintenance');
RESET billing.enforce_quotas;
RESET ROLE;
SELECT used FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.kind = 'rooms' AND key = '3';

-- == Drift is repaired by reconcile_quotas
ALTER TABLE rooms DISABLE TRIGGER USER;
INSERT INTO rooms (owner_id, name) VALUES (2, 'behind the triggers'' back');
ALTER TABLE rooms ENABLE TRIGGER USER;
SELECT relation, key, counted_before, counted_now FROM billing.reconcile_quotas();
SELECT count(*) AS nothing_left FROM billing.reconcile_quotas();

-- == Usage events from the triggers, without a write per insert
-- (counted per UTC day: usage() of them takes UTC-midnight bounds, a part of a
-- day is refused with 22023, README "Usage")
SELECT billing.usage('3', 'rooms_created', date_trunc('day', now(), 'UTC'), date_trunc('day', now(), 'UTC') + interval '1 day') AS rooms_created_today;
\set VERBOSITY sqlstate
SELECT billing.usage('3', 'rooms_created', now(), now() + interval '1 day') AS part_of_a_day;
\set VERBOSITY default
SELECT billing.rollup_usage(now() + interval '1 day') > 0 AS rolled;
SELECT billing.usage('3', 'rooms_created', date_trunc('day', now(), 'UTC'), date_trunc('day', now(), 'UTC') + interval '1 day') AS still_exact;
SELECT metric, quantity FROM billing.usage_daily WHERE user_id = '3' ORDER BY metric;

-- == Bad input
SELECT billing.attach_room_quota('no_such_table', 'owner_id');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_room_quota('rooms', 'no_such_column');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_room_quota(NULL, 'owner_id');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_participant_quota('participants', 'room_id', 'users', 'no_owner');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM billing.quota('1', 'seats');
\echo :LAST_ERROR_SQLSTATE
-- a counted column renamed after attaching: 42703 with a hint, never XX000
BEGIN;
ALTER TABLE rooms RENAME owner_id TO owner;
INSERT INTO rooms (owner, name) VALUES (2, 'renamed');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- a plan whose limit is not a non-negative integer is refused when written,
-- by the same parser the trigger and billing.quota read limits with
UPDATE billing.subscription_plans SET limits = '{"rooms": -2}' WHERE code = 'free';
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.subscription_plans SET limits = '{"rooms": "5"}' WHERE code = 'free';
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.subscription_plans SET limits = '{"rooms": 2.5}' WHERE code = 'free';
\echo :LAST_ERROR_SQLSTATE
UPDATE billing.subscription_plans SET limits = '[3]' WHERE code = 'free';
\echo :LAST_ERROR_SQLSTATE
SELECT billing._plan_limit('{"rooms": 7}', 'rooms') AS seven, billing._plan_limit('{"rooms": null}', 'rooms') AS unlimited,
       billing._plan_limit('{}', 'rooms') AS missing;
SELECT "limit" FROM billing.quota('2', 'rooms');
-- attaching twice changes nothing
SELECT billing.attach_room_quota('rooms', owner_column => 'owner_id') AS rooms_counted_again;
SELECT count(*) AS billing_triggers FROM pg_trigger WHERE tgrelid = 'rooms'::regclass AND tgname LIKE 'billing\_%';

-- == a lifecycle call clears its user's cached limits once, when it returns
-- (the invalidation trigger, called for each statement that writes the
-- user's subscriptions, leaves that user to the call)
INSERT INTO users (email) VALUES ('cache probe') RETURNING id::text AS probe \gset
INSERT INTO rooms (owner_id, name) VALUES (:probe, 'fills the cache');
SELECT cap_valid_until > now() AS cached FROM billing.quota_counters WHERE owner_id = :'probe';
BEGIN;
SET LOCAL track_functions = 'all';
SELECT COALESCE(pg_catalog.sum(calls), 0) AS invalidations_before FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_quota_invalidate_users' \gset
SELECT status FROM billing.start_trial(:'probe', 'pro_monthly');
SELECT calls - :invalidations_before AS trigger_calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'billing' AND funcname = '_quota_invalidate_users';
SELECT cap_valid_until AS after_trial FROM billing.quota_counters WHERE owner_id = :'probe';
-- a later write in the transaction is the trigger's again
INSERT INTO rooms (owner_id, name) VALUES (:probe, 'fills it again');
SELECT cap_valid_until > now() AS cached_again FROM billing.quota_counters WHERE owner_id = :'probe';
UPDATE billing.subscriptions SET metadata = '{"probe": true}' WHERE user_id = :'probe' AND ended_at IS NULL;
SELECT cap_valid_until AS after_update FROM billing.quota_counters WHERE owner_id = :'probe';
COMMIT;
-- the call's writes were audited by their own statements, the UPDATE by the trigger
SELECT action, new_row ->> 'status' AS status, new_row -> 'metadata' AS metadata FROM billing.audit_log
 WHERE table_name = 'subscriptions' AND (new_row ->> 'user_id') = :'probe' ORDER BY id;
-- a counter whose cache is already clear is not written again by the next
-- invalidation (no new row version: a maintenance page clears its owners by
-- the thousand, most of them already clear, each a random counter page)
SELECT ctid AS clear_ctid, cap_valid_until AS already_clear FROM billing.quota_counters WHERE owner_id = :'probe' \gset
SELECT :'already_clear' AS already_clear;
UPDATE billing.subscriptions SET metadata = '{}' WHERE user_id = :'probe' AND ended_at IS NULL;
SELECT ctid = :'clear_ctid' AS left_alone, cap_valid_until FROM billing.quota_counters WHERE owner_id = :'probe';

-- == a call that rewrites one subscription in place clears only the cached
-- limits valid past the first moment its plan may be granted differently
-- (the core's EntitlementMayDifferFrom): a payment converting a trial, from
-- the trial's end; a cancel at period end, from the period's end. A cache
-- filled before the trial started (Free's, valid until then) stays; one
-- valid past that moment is cleared.
INSERT INTO users (email) VALUES ('narrow probe') RETURNING id::text AS narrow \gset
SELECT id AS narrow_sub FROM billing.start_trial(:'narrow', 'pro_monthly', now() + interval '1 year') \gset
INSERT INTO rooms (owner_id, name) VALUES (:narrow, 'fills the cache until the trial');
SELECT cap_valid_until AS narrow_cached FROM billing.quota_counters WHERE owner_id = :'narrow' \gset
SELECT :'narrow_cached'::timestamptz = started_at AS cached_until_the_trial FROM billing.subscriptions WHERE id = :narrow_sub;
SELECT status FROM billing.record_payment(:narrow_sub, 2999, 'usd', true, now() + interval '1 year 1 day');
SELECT cap_valid_until = :'narrow_cached' AS kept_after_conversion FROM billing.quota_counters WHERE owner_id = :'narrow';
SELECT status, cancel_at_period_end FROM billing.cancel(:narrow_sub, true, now() + interval '1 year 2 days');
SELECT cap_valid_until = :'narrow_cached' AS kept_after_cancel FROM billing.quota_counters WHERE owner_id = :'narrow';
-- a period that ended a year ago, renewed by the projection since: its cache
-- is valid past that period's end, and a cancel at that period's end clears it
-- (subscribed before the user row came: the row then starts no Free one)
\set past 900001
SELECT id AS past_sub FROM billing.subscribe(:'past', 'pro_monthly', now() - interval '1 year', false) \gset
SELECT status FROM billing.record_payment(:past_sub, 2999, 'usd', true, now() - interval '1 year');
INSERT INTO users (id, email) VALUES (:past, 'past probe');
INSERT INTO rooms (owner_id, name) VALUES (:past, 'fills the cache');
SELECT cap_valid_until > now() AS past_cached FROM billing.quota_counters WHERE owner_id = :'past';
SELECT status FROM billing.cancel(:past_sub, true, now() - interval '1 year' + interval '1 day');
SELECT cap_valid_until AS past_after_cancel FROM billing.quota_counters WHERE owner_id = :'past';

-- == detach and DROP EXTENSION leave the application's rows alone
SELECT count(*) AS rooms_before FROM rooms \gset
SELECT billing.attach_participant_quota('participants', room_column => 'room_id', rooms => 'rooms',
										room_owner_column => 'owner_id') AS participants_counted_again;
SELECT billing.detach('participants');
SELECT count(*) AS billing_triggers FROM pg_trigger WHERE tgrelid = 'participants'::regclass AND tgname LIKE 'billing\_%';
SELECT tgname AS left_on_rooms FROM pg_trigger WHERE tgrelid = 'rooms'::regclass AND tgname LIKE 'billing\_%' ORDER BY 1;
DROP EXTENSION billing;
SELECT count(*) = :rooms_before AS rooms_kept FROM rooms;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid IN ('rooms'::regclass, 'users'::regclass, 'participants'::regclass)
   AND NOT tgisinternal;
INSERT INTO rooms (owner_id, name) VALUES (1, 'no more billing');
DROP TABLE participants, rooms, users;
DROP ROLE regress_quota_app;
CREATE EXTENSION billing;
