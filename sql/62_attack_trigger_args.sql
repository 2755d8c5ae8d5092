-- Attack (session 8, hostile tester): billing._quota_trigger() is executable
-- by PUBLIC and checks only that the attachment id of its first argument
-- names the table it fires on. Its other arguments (quota, key column,
-- deleted_at) are taken from the trigger, not from the attachment: the owner
-- of an attached rooms table who adds a trigger saying 'participants' makes
-- every insert of a new key fail with XX000 ("could not open relation with
-- OID 0": RoomOwner opens the rooms attachment's parent_relation, which is
-- 0). SAFE outcome (this expected file): the trigger is refused as not
-- billing's (42501 or 39P01), never XX000.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP SCHEMA IF EXISTS atk_app CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
CREATE ROLE regress_atk_migrator LOGIN IN ROLE billing_admin;
CREATE SCHEMA atk_app AUTHORIZATION regress_atk_migrator;
\c - regress_atk_migrator
CREATE TABLE atk_app.rooms (id bigint PRIMARY KEY, owner_id text);
SELECT billing.attach_room_quota('atk_app.rooms', 'owner_id');
SELECT format('CREATE TRIGGER a_hostile AFTER INSERT ON atk_app.rooms FOR EACH ROW
			   EXECUTE FUNCTION billing._quota_trigger(%L, %L, %L, %L)', a.id, 'participants', 'owner_id', 'f')
  FROM billing.attachments a WHERE a.relation = 'atk_app.rooms'::regclass \gexec
DO $$
BEGIN
	INSERT INTO atk_app.rooms VALUES (1, 'someone-new');
	RAISE NOTICE 'outcome: accepted';
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'outcome: %', CASE WHEN SQLSTATE IN ('42501', '39P01') THEN 'refused as not billing''s' ELSE SQLSTATE END;
END
$$;
\c - postgres
SET client_min_messages = warning;
DROP SCHEMA atk_app CASCADE;
DROP OWNED BY regress_atk_migrator;
DROP ROLE regress_atk_migrator;
RESET client_min_messages;
