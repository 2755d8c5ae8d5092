-- Attack (session 9 review 3, hostile tester): a renamed id billing holds
-- nothing live for is let through (finding 70's fix), and the new id starts
-- on Free "as an inserted user does"; the old id's Free subscription stays
-- current "as a deleted user's does". So every rename adds a user to the
-- reports: three users renamed once are six Free users in plan_distribution
-- and active_subscriptions (and arpu's divisor), for ever; a bulk
-- migration of the ids (lower-casing them, say) doubles the Free base.
-- SAFE outcome (this expected file): three users before and after the
-- rename (the old id's Free row ends at the rename, or is not counted).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS fr_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
CREATE SCHEMA fr_app;
CREATE TABLE fr_app.users (id text PRIMARY KEY);
SELECT billing.attach_users('fr_app.users', 'id');
INSERT INTO fr_app.users SELECT 'u' || g FROM pg_catalog.generate_series(1, 3) g;
SELECT plan_code, users FROM billing.plan_distribution(pg_catalog.now() + interval '1 minute');
UPDATE fr_app.users SET id = id || '_renamed';
SELECT count(*) AS users_in_table FROM fr_app.users;
SELECT plan_code, users FROM billing.plan_distribution(pg_catalog.now() + interval '1 minute');
SELECT tier, status, subscriptions FROM billing.active_subscriptions(pg_catalog.now() + interval '1 minute');
SET client_min_messages = warning;
DROP SCHEMA fr_app CASCADE;
RESET client_min_messages;
