-- Attack (session 9 review 3, hostile tester): the rename trigger
-- (billing_user_renamed, AFTER UPDATE ... WHEN OLD.id IS DISTINCT FROM
-- NEW.id) never fires when the UPDATE also moves the row to another
-- partition: PostgreSQL runs it as a DELETE and an INSERT and fires only the
-- AFTER DELETE and AFTER INSERT row triggers. billing._user_inserted's
-- DELETE branch then finds the old id gone (UserGone) and treats the rename
-- as a deletion: the paid Enterprise subscription is canceled at once (no
-- refund), the credit balance leaves the id. A role with UPDATE on the users
-- table and no DELETE (finding 69's profile editor) cancels a paid customer,
-- and the rename the README says is refused (23503) goes through.
-- A users table partitioned BY HASH (id) needs no second column: a plain
-- rename lands in another partition for most new ids ('frank' -> 'frank_v'
-- below), so the refusal holds only by chance ('erin' -> 'erin_v' stays).
-- Fixed (session 9): each UPDATE is refused with 23503, as
-- the same rename within one partition is; carol and frank keep
-- enterprise_yearly.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE ROLE regress_atk_profile LOGIN;   -- no billing role, no DELETE
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TABLE atk_app.users (id text NOT NULL, region text NOT NULL, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE atk_app.users_us PARTITION OF atk_app.users FOR VALUES IN ('us');
CREATE TABLE atk_app.users_eu PARTITION OF atk_app.users FOR VALUES IN ('eu');
GRANT USAGE ON SCHEMA atk_app TO regress_atk_profile;
GRANT SELECT, INSERT, UPDATE ON atk_app.users TO regress_atk_profile;
SELECT billing.attach_users('atk_app.users', 'id');
\c - regress_atk_profile
INSERT INTO atk_app.users VALUES ('carol', 'us');
\c - postgres
SELECT (billing.subscribe('carol', 'enterprise_yearly', with_trial => false)).status;
SELECT (billing.record_payment(s.id, s.price_cents, s.currency, true)).status
  FROM billing.subscriptions s WHERE s.user_id = 'carol' AND s.ended_at IS NULL;
\c - regress_atk_profile
-- within a partition the rename is refused
UPDATE atk_app.users SET id = 'carol_v' WHERE id = 'carol';
-- renamed and moved by one statement: should be refused the same way
UPDATE atk_app.users SET id = 'carol_v', region = 'eu' WHERE id = 'carol';
SELECT id, region FROM atk_app.users ORDER BY id;
\c - postgres
SELECT (billing.effective_plan('carol')).code AS carols_plan;
SELECT s.user_id, p.code, s.status, s.ended_at IS NOT NULL AS ended
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id LIKE 'carol%' ORDER BY s.id;
-- an id billing holds nothing live for (Free) may be renamed and moved by
-- one statement, as within a partition: the old id's Free subscription is
-- closed (user_gone), the new id starts on Free; a move that keeps the id
-- changes nothing
\c - regress_atk_profile
INSERT INTO atk_app.users VALUES ('gina', 'us');
UPDATE atk_app.users SET id = 'gina_v', region = 'eu' WHERE id = 'gina';
UPDATE atk_app.users SET region = 'us' WHERE id = 'gina_v';
SELECT id, region FROM atk_app.users WHERE id LIKE 'gina%' ORDER BY id;
\c - postgres
SELECT s.user_id, p.code, s.status, s.end_reason, s.ended_at IS NOT NULL AS ended
  FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id LIKE 'gina%' ORDER BY s.id;
-- the same through a users table hash-partitioned by its id
\c - regress_atk_migrator
CREATE TABLE atk_app.members (id text PRIMARY KEY) PARTITION BY HASH (id);
CREATE TABLE atk_app.members_0 PARTITION OF atk_app.members FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE atk_app.members_1 PARTITION OF atk_app.members FOR VALUES WITH (MODULUS 2, REMAINDER 1);
GRANT SELECT, INSERT, UPDATE ON atk_app.members TO regress_atk_profile;
SELECT billing.attach_users('atk_app.members', 'id');
\c - regress_atk_profile
INSERT INTO atk_app.members VALUES ('erin'), ('frank');
\c - postgres
SELECT (billing.subscribe(u, 'enterprise_yearly', with_trial => false)).status FROM unnest(ARRAY['erin', 'frank']) u;
SELECT (billing.record_payment(s.id, s.price_cents, s.currency, true)).status
  FROM billing.subscriptions s WHERE s.user_id IN ('erin', 'frank') AND s.ended_at IS NULL ORDER BY s.user_id;
\c - regress_atk_profile
UPDATE atk_app.members SET id = 'erin_v' WHERE id = 'erin';
UPDATE atk_app.members SET id = 'frank_v' WHERE id = 'frank';
SELECT id FROM atk_app.members ORDER BY id;
\c - postgres
SELECT s.user_id, p.code, s.status FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
 WHERE s.user_id IN ('erin', 'frank') AND p.code <> 'free' ORDER BY s.user_id;
SET client_min_messages = warning;
-- billing first: a DROP of its users table is refused while it holds anything live (sql/180)
DROP EXTENSION billing CASCADE;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator, regress_atk_profile;
DROP ROLE regress_atk_migrator, regress_atk_profile;
RESET client_min_messages;
