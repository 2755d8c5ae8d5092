-- Attack (session 9 review 4, hostile tester): the owner of an attached
-- users table, a role with no billing privilege at all (it may not read
-- billing.subscriptions), tries TRUNCATE: the refusal's DETAIL names
-- whichever user billing holds something live for, in or out of the table,
-- with that user's subscription id, status and credit balance. Each try
-- reads another customer's billing state; a user never in the table counts
-- (the table here is empty: nothing the TRUNCATE would delete is billed).
-- SAFE outcome (this expected file): TRUNCATE of a table none of whose
-- users billing holds anything for is allowed, and the refusal never names
-- a user outside the table (here: the TRUNCATE succeeds).
-- (README today says refused "while billing holds anything live for some
-- id", DETAIL naming one user: if that rule stays, the defect left is the
-- DETAIL naming a customer outside the table to a non-billing role.)
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
DROP SCHEMA td_app CASCADE;
DROP ROLE td_owner;
RESET client_min_messages;
