-- attack6 F1, F2 (session 10 review): the first participant's counter is
-- inserted without a statement (src/glue/quota_counter.cpp CreateCounterRow)
-- only while the INSERT would do nothing but store the values given. A DBA's
-- change to a shipped column of billing.quota_counters (the table keeps its
-- eleven columns, no trigger: the guards before) made the INSERT do more:
-- a NOT NULL on cap (23502 for an unlimited counter), other defaults for the
-- columns the INSERT leaves to them, an identity column (428C9). The direct
-- insert stored a NULL into the NOT NULL column, ignored the defaults and
-- wrote the identity column.
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

-- == cap NOT NULL: an unlimited counter (room 2 is nobody's) is refused as the
-- INSERT refuses it (it was stored with a NULL cap)
ALTER TABLE billing.quota_counters ALTER COLUMN cap SET NOT NULL;
\c - regress_a6_app
\set VERBOSITY terse
INSERT INTO a6_app.participants (room_id) VALUES (2);
\set VERBOSITY default
\c - postgres
SELECT * FROM a6_counters();
ALTER TABLE billing.quota_counters ALTER COLUMN cap DROP NOT NULL;

-- == other defaults for deleted_at and created_at: the new counter has them,
-- as the INSERT gives them (they were NULL and the transaction's start)
ALTER TABLE billing.quota_counters ALTER COLUMN deleted_at SET DEFAULT '2000-01-01 00:00:00+00',
	ALTER COLUMN created_at SET DEFAULT '1999-01-01 00:00:00+00';
\c - regress_a6_app
INSERT INTO a6_app.participants (room_id) VALUES (1);
\c - postgres
SELECT key, owner_id, used, created_at, deleted_at FROM a6_counters();
ALTER TABLE billing.quota_counters ALTER COLUMN deleted_at DROP DEFAULT,
	ALTER COLUMN created_at SET DEFAULT pg_catalog.now();

-- == used an identity column GENERATED ALWAYS: the statements refuse to write
-- it (428C9; every counter change steps aside to them, the UPDATE fast path
-- too, so the UPDATE's wording); main's direct insert stored the counter
ALTER TABLE billing.quota_counters ALTER COLUMN used DROP DEFAULT;
ALTER TABLE billing.quota_counters ALTER COLUMN used ADD GENERATED ALWAYS AS IDENTITY;
\c - regress_a6_app
\set VERBOSITY terse
INSERT INTO a6_app.participants (room_id) VALUES (3);
\set VERBOSITY default
\c - postgres
SELECT key, owner_id, used FROM a6_counters();
ALTER TABLE billing.quota_counters ALTER COLUMN used DROP IDENTITY;
ALTER TABLE billing.quota_counters ALTER COLUMN used SET DEFAULT 0;

-- == as shipped again: the direct insert (same outcome either way)
\c - regress_a6_app
INSERT INTO a6_app.participants (room_id) VALUES (4), (2);
\c - postgres
SELECT key, owner_id, used, cap, deleted_at FROM a6_counters();

SET client_min_messages = warning;
DROP FUNCTION a6_counters();
DROP SCHEMA a6_app CASCADE;
DROP OWNED BY regress_a6_owner, regress_a6_app;
DROP ROLE regress_a6_owner, regress_a6_app;
RESET client_min_messages;
