-- Security suite (issue 9): every known escalation and quota bypass, tried by
-- the roles an application really has. Each hostile role plants shadowing
-- types, casts, operators and functions in pg_temp and in a schema of its
-- own (first on its search_path), then runs billing's code paths. The planted
-- code raises a NOTICE when it runs and tries ALTER ROLE ... SUPERUSER: no
-- NOTICE appears below and rolsuper stays false.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS sec_app CASCADE;
DROP SCHEMA IF EXISTS sec_hr CASCADE;
DROP SCHEMA IF EXISTS sec_check CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse

-- billing's privileged code runs as billing_owner: NOLOGIN, not a superuser
SELECT rolname, rolsuper, rolcanlogin, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = 'billing_owner';
SELECT DISTINCT pg_get_userbyid(p.proowner) AS function_owner FROM pg_proc p
 WHERE p.pronamespace = 'billing'::regnamespace;
SELECT DISTINCT pg_get_userbyid(c.relowner) AS table_owner FROM pg_class c
 WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'S', 'v');
SELECT pg_get_userbyid(nspowner) AS schema_owner FROM pg_namespace WHERE nspname = 'billing';
-- Every function runs with search_path pinned to pg_catalog, pg_temp, except
-- these (a new one changes this output and must say why here):
--   C: triggers and event triggers pin it themselves (src/glue/rights.hpp)
--      before any SQL; _restoring, stripe_verify and _valid_user_id (the
--      core's user id rule, executable by no billing role) run no SQL; the core's
--      entitlement entry points (_entitled_plan_id, _entitlement_changes_at,
--      _grants_plan_core) are executable by no billing role and called only
--      from pinned callers;
--   SQL with a RETURN body (_due_at, _micros, _interval_micros,
--      _next_invoice_number): names bound when created, under the install's
--      pinned path;
--   SQL inlined into pinned callers (_book_at, _trials_started,
--      _grants_plan, and the history predicates _valid_at, _current_at,
--      _pays_at, _monthly_cents, _starts_trial, _converts_trial): not executable by any
--      billing role;
--   run_maintenance_batches: a procedure that COMMITs cannot have SET; it
--      qualifies every name (gate/shadowing holds it).
SELECT l.lanname AS language, p.oid::regprocedure AS unpinned,
	   p.prosqlbody IS NOT NULL AS bound_when_created,
	   has_function_privilege('billing_app', p.oid, 'EXECUTE') OR has_function_privilege('billing_analyst', p.oid, 'EXECUTE')
		 OR has_function_privilege('billing_admin', p.oid, 'EXECUTE') AS billing_roles_may_call
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'billing'::regnamespace
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c = 'search_path=pg_catalog, pg_temp')
 ORDER BY 1, p.oid::regprocedure::text;

CREATE ROLE regress_sec_migrator LOGIN IN ROLE billing_admin;   -- owns the application's tables
CREATE ROLE regress_sec_plain LOGIN;                             -- the application's login
CREATE ROLE regress_sec_admin LOGIN IN ROLE billing_admin;       -- a billing admin, owns nothing
CREATE ROLE regress_sec_hr LOGIN;                                -- another team
CREATE SCHEMA sec_check;
CREATE FUNCTION sec_check.superusers() RETURNS bigint LANGUAGE sql AS
	$$ SELECT count(*) FROM pg_roles WHERE rolname LIKE 'regress_sec_%' AND rolsuper $$;
GRANT USAGE ON SCHEMA sec_check TO PUBLIC;
-- Each role works in a session of its own (\c): its pg_temp is its own.

CREATE SCHEMA sec_app AUTHORIZATION regress_sec_migrator;
CREATE SCHEMA sec_hr AUTHORIZATION regress_sec_hr;
GRANT USAGE ON SCHEMA sec_app TO regress_sec_plain, regress_sec_admin;
GRANT CREATE ON SCHEMA public TO regress_sec_plain;   -- a DBA's generosity the attack uses

-- == The migration role's tables, with a column of its own enum type that has
-- hostile casts to text, json and jsonb (what to_jsonb(NEW) and ::text used).
\c - regress_sec_migrator
SET search_path = sec_app, pg_catalog;
CREATE TYPE sec_app.flag AS ENUM ('on', 'off');
CREATE FUNCTION sec_app.evil(f sec_app.flag) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted code ran as %', current_user;
	EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
	RETURN 'x';
END $$;
CREATE FUNCTION sec_app.evil_json(f sec_app.flag) RETURNS json LANGUAGE sql AS $$ SELECT to_json(sec_app.evil(f)) $$;
CREATE FUNCTION sec_app.evil_jsonb(f sec_app.flag) RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb(sec_app.evil(f)) $$;
CREATE CAST (sec_app.flag AS text) WITH FUNCTION sec_app.evil(sec_app.flag);
CREATE CAST (sec_app.flag AS json) WITH FUNCTION sec_app.evil_json(sec_app.flag);
CREATE CAST (sec_app.flag AS jsonb) WITH FUNCTION sec_app.evil_jsonb(sec_app.flag);
-- and, first on its search_path, a text equality and functions named like pg_catalog's
CREATE FUNCTION sec_app.evil_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted = ran as %', current_user;
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR sec_app.= (LEFTARG = text, RIGHTARG = text, FUNCTION = sec_app.evil_eq);
CREATE FUNCTION sec_app.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted now() ran as %', current_user;
	RETURN pg_catalog.now();
END $$;
CREATE FUNCTION sec_app.format(text, anyelement) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted format() ran as %', current_user;
	RETURN '';
END $$;
CREATE TABLE sec_app.users (id bigint PRIMARY KEY, f sec_app.flag DEFAULT 'on');
CREATE TABLE sec_app.rooms (id bigint PRIMARY KEY, owner_id bigint, f sec_app.flag DEFAULT 'on');
CREATE TABLE sec_app.participants (id bigserial PRIMARY KEY, room_id bigint REFERENCES sec_app.rooms, person text,
								   f sec_app.flag DEFAULT 'on');
INSERT INTO sec_app.users VALUES (1), (2);
SELECT billing.attach_users('sec_app.users', 'id');
SELECT billing.attach_room_quota('sec_app.rooms', 'owner_id');
SELECT billing.attach_participant_quota('sec_app.participants', 'room_id', 'sec_app.rooms', 'owner_id');
GRANT SELECT, INSERT ON sec_app.rooms TO regress_sec_plain;
GRANT SELECT, INSERT ON sec_app.participants TO regress_sec_plain;
GRANT USAGE ON SEQUENCE sec_app.participants_id_seq TO regress_sec_plain;
-- (attack 2) a new user and a room whose owner changes: the migrator's casts never run as billing
INSERT INTO sec_app.users VALUES (3);
INSERT INTO sec_app.rooms VALUES (10, 1);
INSERT INTO sec_app.participants (room_id, person) VALUES (10, 'ada');
UPDATE sec_app.rooms SET owner_id = 2 WHERE id = 10;
-- moving a room to an owner who is full, TRUNCATE and insert again
INSERT INTO sec_app.rooms VALUES (11, 2), (12, 2), (13, 1);
UPDATE sec_app.rooms SET owner_id = 2 WHERE id = 13;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE sec_app.rooms CASCADE;
INSERT INTO sec_app.rooms VALUES (10, 2), (11, 2), (12, 2);
INSERT INTO sec_app.rooms VALUES (13, 2);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO sec_app.participants (room_id, person) VALUES (10, 'ada'), (10, 'bob');
DELETE FROM sec_app.participants WHERE person OPERATOR(pg_catalog.=) 'bob';   -- (its own = would run, as itself)
SELECT key, owner_id, used FROM billing.quota_counters ORDER BY attachment_id, key;
SELECT sec_check.superusers() AS superusers;

-- == (attack 1) The application's login: INSERT on rooms and TEMP only. It
-- shadows text (a temporary enum), the cast timestamptz -> text, and the
-- operators and functions the slow path uses, then inserts a room for an
-- owner with no counter yet, and a participant in a room with no counter.
\c - regress_sec_plain
-- in public: a text equality operator and functions named like pg_catalog's
CREATE FUNCTION public.evil_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted = ran as %', current_user;
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.evil_eq);
CREATE FUNCTION public.format(text, anyelement) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted format() ran as %', current_user;
	RETURN '';
END $$;
CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted unnest() ran as %', current_user;
END $$;
SET search_path = pg_temp, public, pg_catalog;
CREATE TYPE pg_temp.text AS ENUM ('infinity', '-infinity');
CREATE FUNCTION pg_temp.evil(timestamptz) RETURNS pg_temp.text LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted code ran as %', current_user;
	EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
	RETURN 'infinity';
END $$;
CREATE CAST (timestamptz AS pg_temp.text) WITH FUNCTION pg_temp.evil(timestamptz);
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted now() ran as %', current_user;
	RETURN pg_catalog.now();
END $$;
CREATE FUNCTION pg_temp.int8larger(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted int8larger() ran as %', current_user;
	RETURN 0;
END $$;
INSERT INTO sec_app.rooms VALUES (20, 7);           -- owner 7: no counter yet
INSERT INTO sec_app.participants (room_id, person) VALUES (20, 'bob');
INSERT INTO sec_app.rooms VALUES (21, 7), (22, 7);
INSERT INTO sec_app.rooms VALUES (23, 7);           -- Free allows 3
\echo :LAST_ERROR_SQLSTATE
-- turning enforcement off, in every way a non-admin has
SET billing.enforce_quotas = off;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('billing.enforce_quotas', 'off', false);
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_sec_plain SET billing.enforce_quotas = off;
\echo :LAST_ERROR_SQLSTATE
SET session_replication_role = replica;
\echo :LAST_ERROR_SQLSTATE
-- the other routes in: COPY, ON CONFLICT, a writable CTE, a moved row, TRUNCATE
COPY sec_app.rooms (id, owner_id) FROM stdin;
24	7
\.
INSERT INTO sec_app.rooms VALUES (25, 7) ON CONFLICT (id) DO NOTHING;
\echo :LAST_ERROR_SQLSTATE
WITH r AS (INSERT INTO sec_app.rooms VALUES (26, 7) RETURNING id) SELECT count(*) FROM r;
\echo :LAST_ERROR_SQLSTATE
UPDATE sec_app.rooms SET owner_id = 7 WHERE id = 10;     -- no UPDATE privilege
\echo :LAST_ERROR_SQLSTATE
TRUNCATE sec_app.rooms CASCADE;                          -- no TRUNCATE privilege
\echo :LAST_ERROR_SQLSTATE
-- billing's trigger functions refuse to act for a table billing did not attach
CREATE TEMP TABLE mine (owner_id bigint);
CREATE TRIGGER forged AFTER INSERT ON pg_temp.mine FOR EACH ROW
	EXECUTE FUNCTION billing._quota_trigger('1', 'rooms', 'owner_id', 'f');
INSERT INTO pg_temp.mine VALUES (7);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER forged ON pg_temp.mine;
CREATE TRIGGER forged AFTER TRUNCATE ON pg_temp.mine FOR EACH STATEMENT
	EXECUTE FUNCTION billing._quota_truncated('2');
TRUNCATE pg_temp.mine;
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER forged_users AFTER INSERT ON pg_temp.mine FOR EACH ROW
	EXECUTE FUNCTION billing._user_inserted('owner_id');
INSERT INTO pg_temp.mine VALUES (8);
\echo :LAST_ERROR_SQLSTATE
-- billing's tables stay closed
UPDATE billing.quota_counters SET used = 0;
\echo :LAST_ERROR_SQLSTATE
SELECT billing._quota_counters_load(2, '{7}', '{7}', '{0}');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT sec_check.superusers() AS superusers;
SELECT a.kind, q.key, q.owner_id, q.used, q.cap FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 ORDER BY a.id, q.key;
SELECT count(*) AS free_subscriptions_for_8 FROM billing.subscriptions WHERE user_id = '8';
SELECT count(*) AS rooms_of_7 FROM sec_app.rooms WHERE owner_id = 7;

-- == (attack 3) billing_admin: a temporary table with a column of a temporary
-- enum cast to text; a table it cannot read; another team's trigger named billing_
\c - regress_sec_hr
CREATE TABLE sec_hr.salaries (ssn text, amount bigint);
INSERT INTO sec_hr.salaries VALUES ('123-45-6789', 100000);
CREATE FUNCTION sec_hr.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER billing_hr_audit AFTER INSERT ON sec_hr.salaries FOR EACH ROW EXECUTE FUNCTION sec_hr.audit();
GRANT USAGE ON SCHEMA sec_hr TO regress_sec_admin;   -- it sees the table, may not read it
\c - regress_sec_admin
SET search_path = pg_temp, pg_catalog;
CREATE TYPE pg_temp.o AS ENUM ('a', 'b');
CREATE FUNCTION pg_temp.evil(pg_temp.o) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'planted code ran as %', current_user;
	EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
	RETURN 'a';
END $$;
CREATE CAST (pg_temp.o AS text) WITH FUNCTION pg_temp.evil(pg_temp.o);
CREATE TEMP TABLE t (o pg_temp.o);
INSERT INTO pg_temp.t VALUES ('a'), ('b'), ('b');
SELECT billing.attach_room_quota('pg_temp.t', 'o');   -- its own table: an enum key is refused (42804), no cast ran
SELECT billing.attach_room_quota('sec_hr.salaries', 'ssn');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.detach('sec_hr.salaries');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_room_quota('billing.quota_counters', 'key');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_users('pg_catalog.pg_authid', 'rolname');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.attach_room_quota('sec_app.rooms', 'owner_id');   -- not its table
\echo :LAST_ERROR_SQLSTATE
SELECT billing._attachment_forget('sec_app.rooms');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.detach('sec_app.rooms');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.detach('pg_temp.t');
\c - postgres
SELECT sec_check.superusers() AS superusers;
SELECT count(*) AS counters_with_ssn FROM billing.quota_counters WHERE key LIKE '%-%';
SELECT tgname FROM pg_trigger WHERE tgrelid = 'sec_hr.salaries'::regclass;
SELECT kind, relation FROM billing.attachments ORDER BY id;

-- == billing_admin adds and edits plans (limits checked when written)
\c - regress_sec_admin
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, limits)
VALUES ('team_monthly', 'Team', 'custom', 'monthly', 4900, 'usd', '{"rooms": 10, "participants_per_room": 100}');
UPDATE billing.subscription_plans SET limits = '{"rooms": 12, "participants_per_room": 100}' WHERE code = 'team_monthly';
UPDATE billing.subscription_plans SET price_cents = 3999 WHERE code = 'pro_monthly';
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, limits)
VALUES ('broken', 'Broken', 'custom', 'monthly', 100, 'usd', '{"rooms": -1}');
\echo :LAST_ERROR_SQLSTATE
-- a plan with a shipped plan's code: refused by the unique key, the shipped
-- plan stays (the admin may not delete plans)
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, limits)
VALUES ('pro_yearly', 'Pro (yearly) v2', 'pro', 'yearly', 1, 'usd', '{"rooms": 50}');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT code, price_cents, limits FROM billing.subscription_plans WHERE code IN ('team_monthly', 'pro_monthly', 'pro_yearly') ORDER BY code;

-- == A participant whose room the inserting role cannot read (row-level
-- security hides it; the foreign key check does not see policies) is refused
-- with 23503: counted as a room without an owner, its counter would have no
-- limit for good.
\c - regress_sec_migrator
INSERT INTO sec_app.rooms VALUES (40, 1);
ALTER TABLE sec_app.rooms ENABLE ROW LEVEL SECURITY;   -- no policy: others see no room
\c - regress_sec_plain
SELECT count(*) AS rooms_visible FROM sec_app.rooms;
INSERT INTO sec_app.participants (room_id, person) VALUES (40, 'eve');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT count(*) AS counters_for_room_40 FROM billing.quota_counters WHERE key = '40';
ALTER TABLE sec_app.rooms DISABLE ROW LEVEL SECURITY;

-- == DROP EXTENSION of another extension detaches nothing
DROP EXTENSION IF EXISTS billing_legacy;
SELECT count(*) AS billing_triggers FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE p.pronamespace = 'billing'::regnamespace AND t.tgrelid::regclass::text LIKE 'sec_app.%';

-- == Partitioned tables keep working for their owner after attach
\c - regress_sec_migrator
SET search_path = sec_app, pg_catalog;
SELECT billing.detach('sec_app.rooms');   -- billing counts rooms in one table (attached again below)
CREATE TABLE sec_app.events (id bigint, owner_id bigint, PRIMARY KEY (id, owner_id)) PARTITION BY RANGE (owner_id);
CREATE TABLE sec_app.events_low PARTITION OF sec_app.events FOR VALUES FROM (0) TO (100);
SELECT billing.attach_room_quota('sec_app.events', 'owner_id');
CREATE TABLE sec_app.events_high PARTITION OF sec_app.events FOR VALUES FROM (100) TO (200);
INSERT INTO sec_app.events VALUES (1, 1), (2, 1), (3, 150);
INSERT INTO sec_app.events_low SELECT g, 5 FROM generate_series(10, 13) g;    -- straight into a partition
\echo :LAST_ERROR_SQLSTATE
INSERT INTO sec_app.events_high SELECT g, 150 FROM generate_series(10, 12) g;
\echo :LAST_ERROR_SQLSTATE
-- a partition that already holds rows would bring them in uncounted: refused
-- (55000); attached empty, its rows go through the parent and are counted
CREATE TABLE sec_app.events_top (id bigint, owner_id bigint, PRIMARY KEY (id, owner_id));
INSERT INTO sec_app.events_top VALUES (1, 250), (2, 250), (3, 250), (4, 250);
ALTER TABLE sec_app.events ATTACH PARTITION sec_app.events_top FOR VALUES FROM (200) TO (300);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE sec_app.events_sub (id bigint, owner_id bigint, PRIMARY KEY (id, owner_id)) PARTITION BY RANGE (owner_id);
CREATE TABLE sec_app.events_sub_a PARTITION OF sec_app.events_sub FOR VALUES FROM (300) TO (400);
INSERT INTO sec_app.events_sub VALUES (1, 300), (2, 300), (3, 300), (4, 300);
ALTER TABLE sec_app.events ATTACH PARTITION sec_app.events_sub FOR VALUES FROM (300) TO (400);   -- rows one level down
\echo :LAST_ERROR_SQLSTATE
TRUNCATE sec_app.events_top;
ALTER TABLE sec_app.events ATTACH PARTITION sec_app.events_top FOR VALUES FROM (200) TO (300);
INSERT INTO sec_app.events VALUES (2, 250), (3, 250), (4, 250);
INSERT INTO sec_app.events VALUES (5, 250);
\echo :LAST_ERROR_SQLSTATE
-- TRUNCATE of one partition is not seen (statement triggers are not cloned
-- to partitions): the counter stays above the rows, never below; reconcile
-- below brings owner 150 back to 1
TRUNCATE sec_app.events_high;
INSERT INTO sec_app.events VALUES (4, 150);
SELECT q.key, q.used FROM billing.quota_counters q JOIN billing.attachments a ON a.id = q.attachment_id
 WHERE a.relation = 'sec_app.events'::regclass ORDER BY q.key;
SELECT relation, key, counted_before, counted_now FROM billing.reconcile_quotas();
SELECT billing.detach('sec_app.events');
SELECT billing.attach_room_quota('sec_app.rooms', 'owner_id');
-- the table's owner may disable billing's triggers (PostgreSQL's rule for
-- owners); reconcile_quotas then shows and repairs the drift, over_quota names the user
ALTER TABLE sec_app.rooms DISABLE TRIGGER USER;
INSERT INTO sec_app.rooms SELECT g, 9 FROM generate_series(100, 104) g;
ALTER TABLE sec_app.rooms ENABLE TRIGGER USER;
SELECT relation, key, counted_before, counted_now FROM billing.reconcile_quotas();
SELECT user_id, quota, "limit", used FROM billing.over_quota();
\c - postgres
SELECT sec_check.superusers() AS superusers;

-- == The owner check is on the role in effect, not on every role the login
-- may become: a login that is a member of the owning role but has SET ROLE
-- to a billing admin that owns nothing cannot detach, nor call the
-- privileged steps directly
CREATE ROLE regress_sec_lead LOGIN IN ROLE regress_sec_migrator, regress_sec_admin;
\c - regress_sec_lead
SET ROLE regress_sec_admin;
SELECT billing.detach('sec_app.rooms');
\echo :LAST_ERROR_SQLSTATE
SELECT billing._attachment_forget('sec_app.rooms');
\echo :LAST_ERROR_SQLSTATE
SELECT billing._quota_counters_repair(a.id, '{}', '{}', '{}') FROM billing.attachments a WHERE a.relation = 'sec_app.rooms'::regclass;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS still_attached FROM billing.attachments WHERE relation = 'sec_app.rooms'::regclass;
\c - postgres

-- == DROP EXTENSION billing detaches every table and leaves its rows
DROP EXTENSION billing;
SELECT count(*) AS rooms_left FROM sec_app.rooms;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'sec_app.rooms'::regclass AND NOT tgisinternal;
CREATE EXTENSION billing;

SET client_min_messages = warning;
DROP OPERATOR public.= (text, text);
DROP FUNCTION public.evil_eq(text, text), public.format(text, anyelement), public.unnest(text[]);
REVOKE CREATE ON SCHEMA public FROM regress_sec_plain;
DROP SCHEMA sec_app CASCADE;
DROP SCHEMA sec_hr CASCADE;
DROP SCHEMA sec_check CASCADE;
DROP OWNED BY regress_sec_migrator, regress_sec_plain, regress_sec_admin, regress_sec_hr;
DROP ROLE regress_sec_lead, regress_sec_migrator, regress_sec_plain, regress_sec_admin, regress_sec_hr;
RESET client_min_messages;
