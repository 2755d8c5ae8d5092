-- Attack (session 9 review 4, hostile tester): the owner of an attached
-- users table, a role with no billing privilege at all (it may not read
-- billing.subscriptions), tries TRUNCATE: the refusal's DETAIL names
-- whichever user billing holds something live for, in or out of the table,
-- with that user's subscription id, status and credit balance. Each try
-- reads another customer's billing state; a user never in the table counts
-- (the table here is empty: nothing the TRUNCATE would delete is billed).
-- Decided (session 9): the refusal stays as the README states it (refused
-- while billing holds anything live for some id: billing does not read the
-- application's ids to compare, and a TRUNCATE of a table billing watches is
-- a reload that must detach first), but its DETAIL names no user and
-- nothing held (core UsersTruncateRefusal): before, it printed
-- "User "secret_customer" has subscription 1 (active)." to this role.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS td_app CASCADE;
DROP ROLE IF EXISTS td_owner;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
CREATE ROLE td_owner NOLOGIN;
CREATE SCHEMA td_app AUTHORIZATION td_owner;
CREATE TABLE td_app.users (id text PRIMARY KEY);
ALTER TABLE td_app.users OWNER TO td_owner;
SELECT billing.attach_users('td_app.users', 'id');
-- a customer billing knows who is not in this table (another system's user)
SELECT status FROM billing.subscribe('secret_customer', 'pro_monthly', '2030-01-01', false);
SET ROLE td_owner;
SELECT count(*) FROM billing.subscriptions;
TRUNCATE td_app.users;
RESET ROLE;
SET client_min_messages = warning;
-- billing first: a DROP of its users table is refused while it holds anything live (sql/180)
DROP EXTENSION billing CASCADE;
DROP SCHEMA td_app CASCADE;
DROP ROLE td_owner;
RESET client_min_messages;
