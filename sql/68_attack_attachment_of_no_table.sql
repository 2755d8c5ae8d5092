-- Attack (session 8, hostile tester): _check_session_owns lets a relation
-- that does not exist pass ("dropped: what is left of its attachment is
-- billing's alone"), and _attachment_save takes any regclass, which an OID
-- literal gives without looking it up. A billing_admin that owns no table at
-- all saves an attachment of OID 999999 and then loads its counters
-- (_quota_counters_load) for anybody: quota() and over_quota() show a victim
-- with 5000 rooms, and reconcile_quotas() fails for every caller, superuser
-- included (LOCK TABLE 999999: 42601).
-- SAFE outcome (this expected file): the attachment of a table that does
-- not exist is refused; nothing is forged; reconcile_quotas() runs.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_admin LOGIN IN ROLE billing_admin;   -- owns nothing
\c - regress_atk_admin
DO $$
DECLARE
	forged integer;
BEGIN
	forged := (billing._attachment_save('rooms', 999999::regclass, 'owner_id', NULL, NULL, NULL, false)).id;
	PERFORM billing._quota_counters_load(forged, '{victim}', '{victim}', '{5000}');
	RAISE NOTICE 'attachment of no table: accepted';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'attachment of no table: refused';
END
$$;
\c - postgres
SELECT used AS victims_rooms FROM billing.quota('victim', 'rooms');
SELECT count(*) AS over_quota FROM billing.over_quota();
DO $$
BEGIN
	PERFORM billing.reconcile_quotas();
	RAISE NOTICE 'reconcile_quotas: runs';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'reconcile_quotas: fails with %', SQLSTATE;
END
$$;

SET client_min_messages = warning;
DELETE FROM billing.attachments WHERE relation = 999999::regclass;
DROP OWNED BY regress_atk_admin;
DROP ROLE regress_atk_admin;
RESET client_min_messages;
