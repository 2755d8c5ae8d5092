-- Attack (session 9 review 3, hostile tester): a renamed id billing holds
-- nothing live for is let through (finding 70's fix), and the new id starts
-- on Free "as an inserted user does"; the old id's Free subscription stays
-- current "as a deleted user's does". So every rename adds a user to the
-- reports: three users renamed once are six Free users in plan_distribution
-- and active_subscriptions (and arpu's divisor), for ever; a bulk
-- migration of the ids (lower-casing them, say) doubles the Free base.
-- Fixed (session 9): an allowed rename, and a user DELETE, close the old
-- id's plain Free subscription (end_reason user_gone, no cancellation in
-- daily_report; the core's ClosedWithItsUser): three users before and
-- after the rename, the reports of an earlier date unchanged.
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
SELECT pg_catalog.clock_timestamp() AS before_rename \gset
UPDATE fr_app.users SET id = id || '_renamed';
SELECT count(*) AS users_in_table FROM fr_app.users;
SELECT plan_code, users FROM billing.plan_distribution(pg_catalog.now() + interval '1 minute');
SELECT tier, status, subscriptions FROM billing.active_subscriptions(pg_catalog.now() + interval '1 minute');
-- the old ids' Free rows end at the rename: a cancellation of nobody
SELECT s.user_id, s.status, s.end_reason FROM billing.subscriptions s WHERE s.user_id LIKE 'u_' ORDER BY s.user_id;
SELECT metric, value FROM billing.daily_report(CURRENT_DATE) WHERE metric IN ('active_free', 'cancellations');
-- the reports of a date before the rename do not change (the history)
SELECT plan_code, users FROM billing.plan_distribution(:'before_rename');
SELECT tier, status, subscriptions FROM billing.active_subscriptions(:'before_rename');
-- a deleted user's Free subscription is closed the same way
DELETE FROM fr_app.users WHERE id = 'u1_renamed';
SELECT plan_code, users FROM billing.plan_distribution(pg_catalog.now() + interval '1 minute');
SELECT tier, status, subscriptions FROM billing.active_subscriptions(pg_catalog.now() + interval '1 minute');
SELECT s.status, s.end_reason FROM billing.subscriptions s WHERE s.user_id = 'u1_renamed';
SELECT plan_code, users FROM billing.plan_distribution(:'before_rename');
SET client_min_messages = warning;
DROP SCHEMA fr_app CASCADE;
RESET client_min_messages;
