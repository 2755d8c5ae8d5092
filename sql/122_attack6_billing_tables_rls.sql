-- attack6 F6 (session 10 review): row-level security a DBA FORCEs on
-- billing's own tables. The statements the first participant's direct steps
-- replace run as the tables' owner, so FORCE ROW LEVEL SECURITY applies to
-- them: the INSERT of a counter checks the policies' WITH CHECK (42501), the
-- plan's SELECT ... FOR SHARE applies the UPDATE policies' USING too (the
-- row filtered out: no plan row). CreateCounterRow (and the UPDATE fast path
-- before it) and ShareLockPlanRow wrote and read past them; they now step
-- aside to the statement when the table has row-level security on.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS a6_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE ROLE regress_a6_owner LOGIN IN ROLE billing_admin;
CREATE ROLE regress_a6_app LOGIN;
CREATE SCHEMA a6_app AUTHORIZATION regress_a6_owner;
\c - regress_a6_owner
CREATE TABLE a6_app.rooms (id bigint PRIMARY KEY, owner_id text);
CREATE TABLE a6_app.participants (id bigserial PRIMARY KEY, room_id bigint NOT NULL);
GRANT USAGE ON SCHEMA a6_app TO regress_a6_app;
GRANT INSERT ON a6_app.participants TO regress_a6_app;
GRANT SELECT ON a6_app.rooms TO regress_a6_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA a6_app TO regress_a6_app;
SELECT billing.attach_participant_quota('a6_app.participants', 'room_id', 'a6_app.rooms', 'owner_id') IS NOT NULL
	AS attached;
INSERT INTO a6_app.rooms VALUES (1, 'alice'), (2, NULL), (3, 'carol'), (4, 'dave');
\c - postgres
CREATE FUNCTION a6_counters() RETURNS TABLE (key text, owner_id text, used bigint, cap bigint, created_at timestamptz,
											  deleted_at timestamptz)
LANGUAGE sql AS $$
	SELECT q.key, q.owner_id, q.used, q.cap, q.created_at, q.deleted_at
	  FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
	 WHERE a.relation = 'a6_app.participants'::regclass ORDER BY q.key
$$;

-- == counters: a policy refuses a new counter for room 1 (42501, as the
-- INSERT refuses it; it was inserted)
ALTER TABLE billing.quota_counters ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY a6_no_room_1 ON billing.quota_counters USING (true) WITH CHECK (key <> '1');
\c - regress_a6_app
\set VERBOSITY terse
INSERT INTO a6_app.participants (room_id) VALUES (1);
\set VERBOSITY default
INSERT INTO a6_app.participants (room_id) VALUES (3), (3);  -- another room: counted
\c - postgres
SELECT key, owner_id, used FROM a6_counters();
DROP POLICY a6_no_room_1 ON billing.quota_counters;
ALTER TABLE billing.quota_counters DISABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY;

-- == plans: every plan readable, but only paid ones lockable (FOR SHARE
-- applies the UPDATE policy): the statement finds no row for Free (what it
-- raises then is the statement's; the direct lock read the row)
ALTER TABLE billing.subscription_plans ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY a6_read ON billing.subscription_plans FOR SELECT USING (true);
CREATE POLICY a6_lock ON billing.subscription_plans FOR UPDATE USING (code <> 'free');
\c - regress_a6_app
\set VERBOSITY terse
INSERT INTO a6_app.participants (room_id) VALUES (4);
\set VERBOSITY default
\c - postgres
SELECT key, owner_id, used FROM a6_counters();
DROP POLICY a6_read ON billing.subscription_plans;
DROP POLICY a6_lock ON billing.subscription_plans;
ALTER TABLE billing.subscription_plans DISABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY;

-- == without them: the direct steps (same outcome either way)
\c - regress_a6_app
INSERT INTO a6_app.participants (room_id) VALUES (1), (4);
\c - postgres
SELECT key, owner_id, used FROM a6_counters();

SET client_min_messages = warning;
DROP FUNCTION a6_counters();
DROP SCHEMA a6_app CASCADE;
DROP OWNED BY regress_a6_owner, regress_a6_app;
DROP ROLE regress_a6_owner, regress_a6_app;
RESET client_min_messages;
