-- Attack (session 8 review 2, hostile tester): the fix for finding 60 keeps
-- a participants counter's owner right through the owner watch trigger on
-- the rooms table (billing_quota_room_owner_<id>, a trigger of the
-- PARTICIPANTS attachment). billing.detach(rooms) drops every billing
-- trigger on the rooms table, that one included, and forgets only the rooms
-- attachment; attach_room_quota does not put it back. The README sends the
-- owner there ("detach billing, attach the partition, and attach billing
-- again"). Afterwards the application's login moves an Enterprise room with
-- 10 participants to a Free user and adds 50 more: 60 in a Free room (50
-- allowed), the joins billed to the Enterprise customer, over_quota() empty.
-- SAFE outcome (this expected file): the owner watch survives detach/attach
-- of the rooms table (or detach of a rooms table a participants attachment
-- uses is refused); the room ends with at most 50, its counter names free1.
-- As fixed (session 9): detach of the rooms table leaves the owner watch of
-- the participants attachment that uses it (detach of the participants
-- table removes it, as before).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE ROLE regress_atk_app LOGIN;
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TABLE atk_app.rooms (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE atk_app.participants (id bigserial PRIMARY KEY, room_id bigint REFERENCES atk_app.rooms ON DELETE CASCADE);
GRANT USAGE ON SCHEMA atk_app TO regress_atk_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA atk_app TO regress_atk_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA atk_app TO regress_atk_app;
SELECT billing.attach_room_quota('atk_app.rooms', 'owner_id');
SELECT billing.attach_participant_quota('atk_app.participants', 'room_id', 'atk_app.rooms', 'owner_id');
-- the rooms table detached and attached again (a partition with rows added
-- in between, say)
DO $$
BEGIN
	PERFORM billing.detach('atk_app.rooms');
EXCEPTION WHEN OTHERS THEN
	NULL;  -- a refusal is a safe outcome too
END
$$;
SELECT billing.attach_room_quota('atk_app.rooms', 'owner_id');
SELECT count(*) AS owner_watch_triggers FROM pg_trigger
 WHERE tgrelid = 'atk_app.rooms'::regclass AND tgname LIKE 'billing\_quota\_room\_owner\_%';
\c - postgres
SELECT (billing.subscribe('ent', 'enterprise_yearly', with_trial => false)).status;
SELECT (billing.record_payment(s.id, s.price_cents, s.currency, true)).status
  FROM billing.subscriptions s WHERE s.user_id = 'ent' AND s.ended_at IS NULL;
\c - regress_atk_app
INSERT INTO atk_app.rooms VALUES (1, 'ent');
INSERT INTO atk_app.participants (room_id) SELECT 1 FROM generate_series(1, 10);
-- the room is given to a Free user, who fills it
UPDATE atk_app.rooms SET owner_id = 'free1' WHERE id = 1;
INSERT INTO atk_app.participants (room_id) SELECT 1 FROM generate_series(1, 50);
SELECT count(*) <= 50 AS free_room_within_limit FROM atk_app.participants WHERE room_id = 1;
\c - postgres
SELECT key, owner_id FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.kind = 'participants';
-- the rooms table detached alone: the participants stay counted and watched
\c - regress_atk_migrator
SELECT billing.detach('atk_app.rooms');
SELECT tgname FROM pg_trigger WHERE tgrelid = 'atk_app.rooms'::regclass AND NOT tgisinternal ORDER BY 1;
-- the participants table detached: its watch on the rooms table goes with it
SELECT billing.detach('atk_app.participants');
SELECT count(*) AS billing_triggers FROM pg_trigger
 WHERE tgrelid IN ('atk_app.rooms'::regclass, 'atk_app.participants'::regclass) AND NOT tgisinternal;
\c - postgres
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_app;
DROP ROLE regress_atk_migrator, regress_atk_app;
RESET client_min_messages;
