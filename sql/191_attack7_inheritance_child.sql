-- attack7 7.2 (session 11 review): PostgreSQL does not inherit triggers to
-- an inheritance child (only partitions get the parent's row triggers), but a
-- query of the parent reads the child's rows. A table made an inheritance
-- child of a table billing counts (CREATE TABLE ... INHERITS, ALTER TABLE
-- ... INHERIT) held rows billing never saw: users that got no Free
-- subscription and whose DELETE, even through the attached table, ended
-- nothing (ann's paid Pro stayed live, for whoever takes the id next), and
-- rooms counted by no quota (five rooms of a Free owner, who may have 3,
-- all read through the rooms table).
-- SAFE outcome (this expected file): both refused with 55000, like an
-- ATTACH PARTITION of a table that holds rows; a partition is still fine.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS a7_inh CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE ROLE regress_a7_inh_owner LOGIN IN ROLE billing_admin;
CREATE ROLE regress_a7_inh_app LOGIN;
CREATE SCHEMA a7_inh AUTHORIZATION regress_a7_inh_owner;
\c - regress_a7_inh_owner
CREATE TABLE a7_inh.users (id text PRIMARY KEY);
CREATE TABLE a7_inh.rooms (id bigint PRIMARY KEY, owner_id text NOT NULL);
SELECT billing.attach_users('a7_inh.users', 'id');
SELECT billing.attach_room_quota('a7_inh.rooms', 'owner_id');
-- users: an inheritance child made by CREATE TABLE ... INHERITS
\set VERBOSITY sqlstate
CREATE TABLE a7_inh.users_old () INHERITS (a7_inh.users);
\set VERBOSITY default
GRANT USAGE ON SCHEMA a7_inh TO regress_a7_inh_app;
GRANT SELECT, INSERT, DELETE ON ALL TABLES IN SCHEMA a7_inh TO regress_a7_inh_app;
\c - regress_a7_inh_app
\set VERBOSITY sqlstate
INSERT INTO a7_inh.users_old VALUES ('ann');
\set VERBOSITY default
\c - postgres
SELECT status FROM billing.subscribe('ann', 'pro_monthly', '2030-01-01', false);
SELECT status FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'ann' AND ended_at IS NULL),
	2999, 'usd', true, '2030-01-01');
-- the application deletes ann through the attached table
\c - regress_a7_inh_app
DELETE FROM a7_inh.users WHERE id = 'ann';
\c - postgres
SELECT user_id, status, ended_at IS NOT NULL AS ended FROM billing.subscriptions WHERE user_id = 'ann' ORDER BY id;

-- rooms: a table of the owner's made a child by ALTER TABLE ... INHERIT
\c - regress_a7_inh_owner
CREATE TABLE a7_inh.rooms_archive (id bigint PRIMARY KEY, owner_id text NOT NULL);
GRANT SELECT, INSERT ON a7_inh.rooms_archive TO regress_a7_inh_app;
\set VERBOSITY sqlstate
ALTER TABLE a7_inh.rooms_archive INHERIT a7_inh.rooms;
\set VERBOSITY default
\c - regress_a7_inh_app
INSERT INTO a7_inh.rooms_archive SELECT g, 'bob' FROM generate_series(1, 5) g;
-- the application's count of bob's rooms (the parent reads its children)
SELECT count(*) AS bob_rooms FROM a7_inh.rooms WHERE owner_id = 'bob';
\c - postgres
SELECT (billing.quota('bob', 'rooms')).*;
-- a partition of a partitioned attached table is still made and counted
\c - regress_a7_inh_owner
CREATE TABLE a7_inh.members (id bigint, room_id bigint NOT NULL) PARTITION BY RANGE (id);
SELECT billing.attach_participant_quota('a7_inh.members', 'room_id', 'a7_inh.rooms', 'owner_id');
CREATE TABLE a7_inh.members_1 PARTITION OF a7_inh.members FOR VALUES FROM (1) TO (100);
INSERT INTO a7_inh.rooms VALUES (100, 'cy');
INSERT INTO a7_inh.members VALUES (1, 100);
\c - postgres
SELECT q.key, q.owner_id, q.used FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.relation = 'a7_inh.members'::regclass;

-- a table that has an inheritance child already is not attached
\c - regress_a7_inh_owner
CREATE TABLE a7_inh.guests (id bigint PRIMARY KEY, room_id bigint NOT NULL);
CREATE TABLE a7_inh.guests_old () INHERITS (a7_inh.guests);
SELECT billing.attach_participant_quota('a7_inh.guests', 'room_id', 'a7_inh.rooms', 'owner_id');
\c - postgres
SELECT count(*) AS guests_attached FROM billing.attachments WHERE relation = 'a7_inh.guests'::regclass;

SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;  -- (ann's Pro is live: the users table may not be dropped under billing)
DROP SCHEMA a7_inh CASCADE;
DROP OWNED BY regress_a7_inh_owner, regress_a7_inh_app;
DROP ROLE regress_a7_inh_owner, regress_a7_inh_app;
RESET client_min_messages;
