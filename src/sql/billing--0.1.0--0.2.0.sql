-- billing 0.1.0 -> 0.2.0 (ALTER EXTENSION billing UPDATE).
--
-- Quotas: the counters table gets its new layout (the key in the C collation,
-- the columns an insert changes side by side, a hash index the triggers look
-- counters up with), kept row for row; the quota triggers on attached tables
-- become AFTER ROW triggers (INSERT ... ON CONFLICT counts only rows really
-- inserted) that watch the final row; a participants attachment's watch on
-- its rooms table is named after the attachment, and detach removes it.
\echo Use "ALTER EXTENSION billing UPDATE TO '0.2.0'" to load this file. \quit

SET LOCAL search_path TO pg_catalog, pg_temp;

-- == billing.quota_counters, rebuilt with its rows (usage not rolled up yet included)
CREATE TEMP TABLE quota_counters_0_1_0 AS SELECT * FROM billing.quota_counters;
ALTER EXTENSION billing DROP TABLE billing.quota_counters;
DROP TABLE billing.quota_counters;

CREATE TABLE billing.quota_counters (
	attachment_id integer NOT NULL REFERENCES billing.attachments (id) ON DELETE CASCADE,
	used bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
	usage_pending bigint NOT NULL DEFAULT 0 CHECK (usage_pending >= 0),
	cap bigint,                          -- cached limit; NULL = unlimited
	cap_valid_until timestamptz NOT NULL DEFAULT '-infinity',
	usage_day date,                      -- usage counted here until rolled up
	key text COLLATE "C" NOT NULL,       -- the owner (rooms) or the room (participants)
	owner_id text NOT NULL,              -- whose plan limits this counter
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz,
	PRIMARY KEY (attachment_id, key)
) WITH (fillfactor = 20);
COMMENT ON TABLE billing.quota_counters IS
	'Rows counted per owner or room, with the cached limit; maintained by the quota triggers';
CREATE INDEX quota_counters_owner ON billing.quota_counters (owner_id);
-- How the trigger's fast path finds a counter: one hash bucket page, cheaper
-- than descending the primary key (which keeps the pair unique).
CREATE INDEX quota_counters_key ON billing.quota_counters USING hash (key);

INSERT INTO billing.quota_counters (attachment_id, used, usage_pending, cap, cap_valid_until, usage_day, key,
									owner_id, created_at, updated_at, deleted_at)
SELECT attachment_id, used, usage_pending, cap, cap_valid_until, usage_day, key,
	   owner_id, created_at, updated_at, deleted_at
  FROM pg_temp.quota_counters_0_1_0;
DROP TABLE pg_temp.quota_counters_0_1_0;
REVOKE ALL ON billing.quota_counters FROM PUBLIC;
GRANT SELECT ON billing.quota_counters TO billing_analyst, billing_admin;
SELECT pg_catalog.pg_extension_config_dump('billing.quota_counters', '');

-- == detach also removes a participants attachment's watch on its rooms table
CREATE OR REPLACE FUNCTION billing.detach(relation regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t name;
	parent regclass;
BEGIN
	FOR t IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
			  WHERE tg.tgrelid = relation AND NOT tg.tgisinternal AND tg.tgname LIKE 'billing\_%'
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, relation);
	END LOOP;
	-- a participants table's attachment also watches its rooms table
	FOR t, parent IN SELECT tg.tgname, a.parent_relation FROM billing.attachments a
					   JOIN pg_catalog.pg_trigger tg ON tg.tgrelid OPERATOR(pg_catalog.=) a.parent_relation
					  WHERE a.relation OPERATOR(pg_catalog.=) detach.relation
						AND tg.tgname OPERATOR(pg_catalog.=) ('billing_quota_room_owner_' || a.id)
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, parent);
	END LOOP;
	DELETE FROM billing.attachments a WHERE a.relation = detach.relation;
END
$$;

-- == attaching: counting and creating the triggers are now two functions
CREATE OR REPLACE FUNCTION billing._quota_attach(att billing.attachments) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	live text := CASE WHEN att.counts_deleted_at THEN 't.deleted_at IS NULL' ELSE 'true' END;
BEGIN
	EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', att.relation);
	DELETE FROM billing.quota_counters q WHERE q.attachment_id = att.id;
	IF att.kind = 'rooms' THEN
		EXECUTE pg_catalog.format(
			'INSERT INTO billing.quota_counters (attachment_id, key, owner_id, used)
			 SELECT %s, t.%I::text, t.%I::text, count(*) FROM %s t WHERE t.%I IS NOT NULL AND %s GROUP BY 2, 3',
			att.id, att.key_column, att.key_column, att.relation, att.key_column, live);
	ELSE
		EXECUTE pg_catalog.format(
			'INSERT INTO billing.quota_counters (attachment_id, key, owner_id, used)
			 SELECT %s, t.%I::text, COALESCE(r.%I::text, ''''), count(*)
			   FROM %s t LEFT JOIN %s r ON r.%I = t.%I
			  WHERE t.%I IS NOT NULL AND %s GROUP BY 2, 3',
			att.id, att.key_column, att.parent_owner_column, att.relation, att.parent_relation,
			att.parent_key_column, att.key_column, att.key_column, live);
	END IF;
	PERFORM billing._quota_create_triggers(att);
END
$$;

-- Internal: (re)creates the quota triggers of one attachment.
CREATE FUNCTION billing._quota_create_triggers(att billing.attachments) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	changed text := pg_catalog.format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', att.key_column)
		|| CASE WHEN att.counts_deleted_at THEN ' OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at' ELSE '' END;
	args text := pg_catalog.format('%L, %L, %L, %L', att.id, att.kind, att.key_column, att.counts_deleted_at);
	owner_watch text := 'billing_quota_room_owner_' || att.id;
BEGIN
	PERFORM billing._detach_triggers(att.relation, att.kind);
	IF att.kind = 'participants' THEN
		-- On the rooms table, named after this attachment (detach removes it).
		-- No "UPDATE OF": a column set by the application's own BEFORE
		-- trigger is not in the statement's SET list; WHEN sees the final row.
		IF EXISTS (SELECT FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid OPERATOR(pg_catalog.=) att.parent_relation
					 AND tg.tgname OPERATOR(pg_catalog.=) owner_watch) THEN
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', owner_watch, att.parent_relation);
		END IF;
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW
			 WHEN (OLD.%I IS DISTINCT FROM NEW.%I)
			 EXECUTE FUNCTION billing._quota_room_owner_changed(%L, %L, %L)',
			owner_watch, att.parent_relation, att.parent_owner_column, att.parent_owner_column,
			att.id, att.parent_key_column, att.parent_owner_column);
	END IF;
	-- AFTER ROW: a row counts once it is really there. A BEFORE trigger would
	-- count rows that INSERT ... ON CONFLICT then skips or turns into an update.
	-- A refusal still fails the statement as a whole, and the row lock on the
	-- counter keeps the limit exact. zz: after the application's own triggers.
	EXECUTE pg_catalog.format('CREATE TRIGGER billing_zz_quota_%s AFTER INSERT OR DELETE ON %s
		FOR EACH ROW EXECUTE FUNCTION billing._quota_trigger(%s)', att.kind, att.relation, args);
	EXECUTE pg_catalog.format('CREATE TRIGGER billing_zz_quota_%s_update AFTER UPDATE ON %s
		FOR EACH ROW WHEN (%s) EXECUTE FUNCTION billing._quota_trigger(%s)',
		att.kind, att.relation, changed, args);
	EXECUTE pg_catalog.format('CREATE TRIGGER billing_quota_%s_truncate AFTER TRUNCATE ON %s
		FOR EACH STATEMENT EXECUTE FUNCTION billing._quota_truncated(%L)', att.kind, att.relation, att.id);
END
$$;
REVOKE ALL ON FUNCTION billing._quota_create_triggers(billing.attachments) FROM PUBLIC;

-- == every attached table gets the new triggers; its counters stay as they are
DO $upgrade$
DECLARE
	att billing.attachments;
BEGIN
	FOR att IN SELECT * FROM billing.attachments a WHERE a.kind IN ('rooms', 'participants') ORDER BY a.id LOOP
		IF att.kind = 'participants' AND EXISTS (
				SELECT FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid OPERATOR(pg_catalog.=) att.parent_relation
				   AND tg.tgname OPERATOR(pg_catalog.=) 'billing_quota_room_owner') THEN
			EXECUTE pg_catalog.format('DROP TRIGGER billing_quota_room_owner ON %s', att.parent_relation);
		END IF;
		PERFORM billing._quota_create_triggers(att);
	END LOOP;
END
$upgrade$;
