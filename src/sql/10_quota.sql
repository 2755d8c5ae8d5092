-- Quotas (SPEC §2): C++ triggers on the application's rooms and participants
-- keep one counter row per owner (rooms) or per room (participants). An insert
-- is one primary-key UPDATE of that row: the row lock makes the limit exact
-- under any concurrency, and the cost does not grow with the table.

-- The two columns an insert changes come first and side by side: an update
-- logs only the bytes that differ, so the WAL record stays small.
-- No foreign key to billing.attachments: its check on every new counter was
-- a statement and a row lock (a MultiXact when first participants race) of
-- the same attachments row per first participant. The counters go with
-- their attachment where billing deletes it (_attachment_forget,
-- _after_drop_table), each time after the table's triggers are gone.
CREATE TABLE billing.quota_counters (
	attachment_id integer NOT NULL,
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
-- The primary key is how the trigger's fast path finds a counter too (a new
-- room's entry lands beside the previous new room's; a hash index on key
-- scattered them, a full-page image per first participant on a large book).
-- The owner index is how a subscription change finds the owner's counters.
CREATE INDEX quota_counters_owner ON billing.quota_counters (owner_id);
-- How the rollup finds the counters with pending usage without reading every
-- counter: a counter counts usage only into its open day (usage_day), and
-- the rollup closes a day once it is over (usage_day NULL, usage_pending 0),
-- so it reads only the counters counted since it last closed their day
-- (billing.rollup_usage). An index on usage_pending or with a predicate on
-- it would make every count a non-HOT update; usage_day changes once per
-- counter and day, in the slow path.
CREATE INDEX quota_counters_usage_day ON billing.quota_counters (usage_day);

-- Internal: the metric a counter's inserts are recorded as.
CREATE FUNCTION billing._quota_metric(attachment_id integer) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE a.kind WHEN 'rooms' THEN 'rooms_created' ELSE 'participants_joined' END
	  FROM billing.attachments a WHERE a.id OPERATOR(pg_catalog.=) $1
$$;

-- Internal: the slow path of the quota trigger, taken when the one-statement
-- fast path did not apply (no counter yet, the cached limit is stale, or a new
-- day began). Creates and locks the counter, moves the previous day's usage
-- into billing.usage_daily, and returns what the C++ decision needs: the
-- owner's plan and until when it may be cached (one load of the owner's
-- subscription, the core's projection). Reads no application table: a new
-- participants counter needs its room's owner (p_owner), which the trigger
-- looks up as the invoking user when this returns all NULL. The trigger runs
-- the same C++ (src/glue/quota_trigger.cpp, PrepareCounter) without a call.
CREATE FUNCTION billing._quota_prepare(p_attachment integer, p_key text, p_at timestamptz, p_owner text,
									   OUT used bigint, OUT limits text, OUT plan_code text, OUT plan_name text,
									   OUT cap_valid_until timestamptz, OUT owner_id text)
LANGUAGE c CALLED ON NULL INPUT SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_quota_prepare';

-- Internal: clears the cached limits of the given owners' counters (all
-- counters when NULL) with the newest snapshot, so also a counter committed
-- after a REPEATABLE READ transaction's snapshot is reached
-- (src/glue/quota_trigger.cpp).
CREATE FUNCTION billing._quota_invalidate(owner_ids text[]) RETURNS bigint
LANGUAGE c CALLED ON NULL INPUT SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_quota_invalidate';

-- Internal: any write to users' subscriptions makes the cached limits of
-- those users' counters stale. Once per statement (a backfill writes a
-- subscription per user): writes each user's billing.user_locks row first, in
-- user order (waiting for a fill in progress; a write, not only a lock, so
-- that a REPEATABLE READ fill that did not see it fails), then clears every
-- counter of those users, whatever its cached state looks like in this
-- snapshot. C++ (src/glue/quota_trigger.cpp): reads the users from the
-- transition tables itself.
CREATE FUNCTION billing._quota_invalidate_users() RETURNS trigger
LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_quota_invalidate_users';
CREATE TRIGGER quota_invalidate_insert AFTER INSERT ON billing.subscriptions
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._quota_invalidate_users();
CREATE TRIGGER quota_invalidate_update AFTER UPDATE ON billing.subscriptions
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION billing._quota_invalidate_users();

-- A plan's limits changed: this transaction holds the plan's row (fills lock
-- it FOR SHARE), and every cached limit is cleared.
CREATE FUNCTION billing._quota_invalidate_plan() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NEW.limits IS DISTINCT FROM OLD.limits THEN
		PERFORM billing._quota_invalidate(NULL);
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER quota_invalidate AFTER UPDATE ON billing.subscription_plans
	FOR EACH ROW EXECUTE FUNCTION billing._quota_invalidate_plan();

-- The C++ trigger: counts rows in and out and refuses one too many (QB001).
CREATE FUNCTION billing._quota_trigger() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_quota_trigger';

-- TRUNCATE of an application table: nothing is counted any more. Only for the
-- table the attachment names (anyone may create a trigger calling this).
CREATE FUNCTION billing._quota_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM billing.attachments a
					WHERE a.id OPERATOR(pg_catalog.=) TG_ARGV[0]::integer AND a.relation OPERATOR(pg_catalog.=) TG_RELID AND a.kind OPERATOR(pg_catalog.<>) 'users') THEN
		RAISE EXCEPTION 'trigger "%" on table % may not act on billing''s counters', TG_NAME, TG_RELID::pg_catalog.regclass
			USING ERRCODE = '42501', DETAIL = 'The trigger calls a billing function, but billing did not attach that table.';
	END IF;
	UPDATE billing.quota_counters q SET used = 0, updated_at = pg_catalog.now()
	 WHERE q.attachment_id OPERATOR(pg_catalog.=) TG_ARGV[0]::integer AND q.used OPERATOR(pg_catalog.<>) 0;
	RETURN NULL;
END
$$;

-- A room given to another owner: its participants' counter follows. C++: the
-- room's key and owner are read as the updating user, never as billing.
CREATE FUNCTION billing._quota_room_owner_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_room_owner_changed';

ALTER TABLE billing.attachments ADD COLUMN parent_key_column name;
ALTER TABLE billing.attachments ADD COLUMN counts_deleted_at boolean NOT NULL DEFAULT false;

-- Internal: the session may act as the table's owner (a member of its owning
-- role). The privileged helpers below check it: the caller of attach_*,
-- detach and reconcile_quotas must own the table, as CREATE TRIGGER requires.
CREATE FUNCTION billing._check_session_owns(relation regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._required(relation, 'relation');
	-- A relation that does not exist is owned by nobody: an OID literal is a
	-- regclass without a lookup (attack finding 68).
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) relation) THEN
		RAISE EXCEPTION 'relation with OID % does not exist', relation::pg_catalog.oid USING ERRCODE = '42P01';
	END IF;
	-- Called from SECURITY DEFINER code, where current_user is billing's
	-- owner: the role that counts is the one in effect outside it (SET ROLE's,
	-- else the login's), which must have the owner's privileges. Not every
	-- role the login could SET ROLE to.
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_class c
					WHERE c.oid OPERATOR(pg_catalog.=) relation
					  AND pg_catalog.pg_has_role(CASE pg_catalog.current_setting('role')
												 WHEN 'none' THEN session_user
												 ELSE pg_catalog.current_setting('role')::pg_catalog.name END,
												 c.relowner, 'USAGE')) THEN
		RAISE EXCEPTION 'must be owner of table %', relation
			USING ERRCODE = '42501', HINT = 'Billing is attached to a table by its owner, as CREATE TRIGGER requires.';
	END IF;
END
$$;

-- Internal: records (or updates) an attachment.
CREATE FUNCTION billing._attachment_save(p_kind text, p_relation regclass, p_key_column name,
										 p_parent regclass, p_parent_owner_column name, p_parent_key_column name,
										 p_counts_deleted_at boolean)
RETURNS billing.attachments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
BEGIN
	PERFORM billing._required(p_kind, 'p_kind'), billing._required(p_relation, 'p_relation'),
			billing._required(p_key_column, 'p_key_column'), billing._required(p_counts_deleted_at, 'p_counts_deleted_at');
	IF p_kind NOT IN ('users', 'rooms', 'participants') THEN
		RAISE EXCEPTION 'unknown attachment kind "%"', p_kind USING ERRCODE = '22023';
	END IF;
	-- a participants table names its rooms table; the others name none
	IF p_kind OPERATOR(pg_catalog.=) 'participants' THEN
		PERFORM billing._required(p_parent, 'p_parent'), billing._required(p_parent_owner_column, 'p_parent_owner_column'),
				billing._required(p_parent_key_column, 'p_parent_key_column');
	ELSIF p_parent IS NOT NULL OR p_parent_owner_column IS NOT NULL OR p_parent_key_column IS NOT NULL THEN
		RAISE EXCEPTION 'a % attachment has no parent table', p_kind USING ERRCODE = '22023';
	END IF;
	PERFORM billing._check_session_owns(p_relation);
	IF p_parent IS NOT NULL THEN
		PERFORM billing._check_session_owns(p_parent);
	END IF;
	-- An inheritance child gets none of the table's triggers (a partition
	-- gets its row triggers), while a query of the table reads the child's
	-- rows: billing would not see them (attack finding 7.2; a child made
	-- later is refused by billing._after_partition_change).
	IF EXISTS (SELECT FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
				WHERE i.inhparent OPERATOR(pg_catalog.=) p_relation AND NOT c.relispartition) THEN
		RAISE EXCEPTION 'billing cannot count the rows of table %, which has inheritance children', p_relation
			USING ERRCODE = '55000',
				  DETAIL = 'PostgreSQL fires none of the table''s triggers for an inheritance child''s rows, and a query of the table reads them.',
				  HINT = 'Use a partitioned table, or move the children''s rows into the table and detach the children (ALTER TABLE ... NO INHERIT).';
	END IF;
	-- attach_* count the table's rows (rooms, participants) or give its users
	-- Free subscriptions on the transaction's snapshot: in REPEATABLE READ or
	-- SERIALIZABLE it predates the lock they take, and rows committed in
	-- between would be in no counter, with no trigger yet to count them
	-- (attack finding 7.4).
	IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
		RAISE EXCEPTION 'billing reads the rows of table % when it attaches it: run the attach in READ COMMITTED', p_relation
			USING ERRCODE = '0A000',
				  DETAIL = pg_catalog.format('The transaction is %s: its snapshot predates the lock the attach takes.',
											 pg_catalog.current_setting('transaction_isolation')),
				  HINT = 'Run it in a READ COMMITTED transaction (SET TRANSACTION ISOLATION LEVEL READ COMMITTED first).';
	END IF;
	-- A plan limits a user's rooms, and the rooms counter is per table: a
	-- second rooms table would give every user the limit once more (attack
	-- finding 66). Locked, so two attaches at once cannot both pass.
	IF p_kind OPERATOR(pg_catalog.=) 'rooms' THEN
		LOCK TABLE billing.attachments IN SHARE ROW EXCLUSIVE MODE;
		IF EXISTS (SELECT FROM billing.attachments a WHERE a.kind OPERATOR(pg_catalog.=) 'rooms'
					 AND a.relation OPERATOR(pg_catalog.<>) p_relation) THEN
			RAISE EXCEPTION 'billing counts rooms in one table only'
				USING ERRCODE = '0A000',
					  DETAIL = pg_catalog.format('Table %s is attached as the rooms table already.',
						(SELECT a.relation FROM billing.attachments a WHERE a.kind OPERATOR(pg_catalog.=) 'rooms' LIMIT 1)),
					  HINT = 'Keep every kind of room in one table (partitioned, if need be), or detach the other table first.';
		END IF;
	END IF;
	INSERT INTO billing.attachments AS a (kind, relation, key_column, parent_relation, parent_owner_column,
										  parent_key_column, counts_deleted_at)
	VALUES (p_kind, p_relation, p_key_column, p_parent, p_parent_owner_column, p_parent_key_column,
			p_counts_deleted_at)
	ON CONFLICT (relation, kind) DO UPDATE
	   SET key_column = EXCLUDED.key_column, parent_relation = EXCLUDED.parent_relation,
		   parent_owner_column = EXCLUDED.parent_owner_column, parent_key_column = EXCLUDED.parent_key_column,
		   counts_deleted_at = EXCLUDED.counts_deleted_at
	 WHERE (a.key_column, a.parent_relation, a.parent_owner_column, a.parent_key_column, a.counts_deleted_at)
		   IS DISTINCT FROM (EXCLUDED.key_column, EXCLUDED.parent_relation, EXCLUDED.parent_owner_column,
							 EXCLUDED.parent_key_column, EXCLUDED.counts_deleted_at);
	SELECT * INTO STRICT att FROM billing.attachments a WHERE a.relation OPERATOR(pg_catalog.=) p_relation AND a.kind OPERATOR(pg_catalog.=) p_kind;
	RETURN att;
END
$$;

-- Internal: forgets a table's attachments (their counters go with them).
CREATE FUNCTION billing._attachment_forget(p_relation regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._check_session_owns(p_relation);
	DELETE FROM billing.quota_counters q USING billing.attachments a
	 WHERE q.attachment_id OPERATOR(pg_catalog.=) a.id AND a.relation OPERATOR(pg_catalog.=) p_relation;
	DELETE FROM billing.attachments a WHERE a.relation OPERATOR(pg_catalog.=) p_relation;
END
$$;

-- Internal: what an attached table holds now, counted with the caller's
-- rights: per key (owner or room) its owner and its live rows. Keys are
-- written by their type's output function, as the trigger reads them.
CREATE FUNCTION billing._quota_count(att billing.attachments, OUT keys text[], OUT owners text[], OUT counts bigint[])
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	live text := CASE WHEN att.counts_deleted_at THEN 't.deleted_at IS NULL' ELSE 'true' END;
BEGIN
	PERFORM billing._required(att.relation, 'att');
	IF att.kind OPERATOR(pg_catalog.=) 'rooms' THEN
		EXECUTE pg_catalog.format(
			'SELECT COALESCE(pg_catalog.array_agg(s.k), ''{}''), COALESCE(pg_catalog.array_agg(s.k), ''{}''),
					COALESCE(pg_catalog.array_agg(s.n), ''{}'')
			   FROM (SELECT pg_catalog.format(''%%s'', t.%1$I) AS k, pg_catalog.count(*) AS n
					   FROM %2$s t WHERE t.%1$I IS NOT NULL AND %3$s GROUP BY 1) s',
			att.key_column, att.relation, live) INTO keys, owners, counts;
	ELSE
		EXECUTE pg_catalog.format(
			'SELECT COALESCE(pg_catalog.array_agg(s.k), ''{}''), COALESCE(pg_catalog.array_agg(s.o), ''{}''),
					COALESCE(pg_catalog.array_agg(s.n), ''{}'')
			   FROM (SELECT pg_catalog.format(''%%s'', t.%1$I) AS k, pg_catalog.format(''%%s'', r.%2$I) AS o,
							pg_catalog.count(*) AS n
					   FROM %3$s t LEFT JOIN %4$s r ON r.%5$I OPERATOR(pg_catalog.=) t.%1$I
					  WHERE t.%1$I IS NOT NULL AND %6$s GROUP BY 1, 2) s',
			att.key_column, att.parent_owner_column, att.relation, att.parent_relation, att.parent_key_column, live)
		  INTO keys, owners, counts;
	END IF;
END
$$;

-- Internal: replaces an attachment's counters with what _quota_count found.
CREATE FUNCTION billing._quota_counters_load(p_attachment integer, keys text[], owners text[], counts bigint[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
BEGIN
	PERFORM billing._required(keys, 'keys'), billing._required(owners, 'owners'), billing._required(counts, 'counts');
	SELECT * INTO att FROM billing.attachments a WHERE a.id OPERATOR(pg_catalog.=) billing._required(p_attachment, 'p_attachment');
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown attachment %', p_attachment USING ERRCODE = '22023';
	END IF;
	PERFORM billing._check_session_owns(att.relation);
	DELETE FROM billing.quota_counters q WHERE q.attachment_id OPERATOR(pg_catalog.=) p_attachment;
	INSERT INTO billing.quota_counters (attachment_id, key, owner_id, used)
	SELECT p_attachment, u.k, u.o, u.n FROM ROWS FROM (pg_catalog.unnest(keys), pg_catalog.unnest(owners), pg_catalog.unnest(counts)) AS u(k, o, n);
	RETURN (SELECT COALESCE(pg_catalog.sum(q.used), 0) FROM billing.quota_counters q WHERE q.attachment_id OPERATOR(pg_catalog.=) p_attachment);
END
$$;

-- Internal: installs the counting triggers and fills the counters from what
-- the table holds now, with the caller's rights. The table is locked so
-- nothing slips in between.
CREATE FUNCTION billing._quota_attach(att billing.attachments) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	found record;
BEGIN
	PERFORM billing._required(att.relation, 'att');
	EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', att.relation);
	found := billing._quota_count(att);
	PERFORM billing._quota_create_triggers(att);
	PERFORM billing._quota_counters_load(att.id, found.keys, found.owners, found.counts);
END
$$;

-- Internal: (re)creates the quota triggers of one attachment, as the caller.
CREATE FUNCTION billing._quota_create_triggers(att billing.attachments) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	changed text := pg_catalog.format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', att.key_column)
		OPERATOR(pg_catalog.||) CASE WHEN att.counts_deleted_at THEN ' OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at' ELSE '' END;
	args text := pg_catalog.format('%L, %L, %L, %L', att.id, att.kind, att.key_column, att.counts_deleted_at);
	owner_watch text := 'billing_quota_room_owner_' OPERATOR(pg_catalog.||) att.id;
	old_watch record;
BEGIN
	PERFORM billing._required(att.relation, 'att');
	PERFORM billing._detach_triggers(att.relation, att.kind);
	IF att.kind OPERATOR(pg_catalog.=) 'participants' THEN
		-- On the rooms table, named after this attachment (detach removes it):
		-- a room given to another owner, and a room key another room had
		-- (inserted, or a key changed to it), move the room's counter. No
		-- "UPDATE OF" and no WHEN: a column set by the application's own
		-- BEFORE trigger is not in the statement's SET list, and a WHEN on
		-- OLD cannot serve INSERT; the function compares the two rows.
		-- wherever it is: a participants table attached again to another
		-- rooms table leaves none on the old one (attack finding 75)
		FOR old_watch IN SELECT tg.tgrelid::pg_catalog.regclass AS rel FROM pg_catalog.pg_trigger tg
						  WHERE tg.tgname OPERATOR(pg_catalog.=) owner_watch
							AND tg.tgfoid OPERATOR(pg_catalog.=) 'billing._quota_room_owner_changed()'::pg_catalog.regprocedure LOOP
			EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', owner_watch, old_watch.rel);
		END LOOP;
		EXECUTE pg_catalog.format(
			'CREATE TRIGGER %I AFTER INSERT OR UPDATE ON %s FOR EACH ROW
			 EXECUTE FUNCTION billing._quota_room_owner_changed(%L, %L, %L)',
			owner_watch, att.parent_relation, att.id, att.parent_key_column, att.parent_owner_column);
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

-- Internal: drops the billing triggers of one kind from a table: only
-- triggers whose function is billing's (a trigger of the application's that
-- happens to be named billing_... is left alone).
CREATE FUNCTION billing._detach_triggers(relation regclass, kind text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t name;
BEGIN
	PERFORM billing._required(relation, 'relation'), billing._required(kind, 'kind');
	FOR t IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
			   JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) tg.tgfoid
			  WHERE tg.tgrelid OPERATOR(pg_catalog.=) relation AND NOT tg.tgisinternal AND tg.tgparentid OPERATOR(pg_catalog.=) 0
				AND p.pronamespace OPERATOR(pg_catalog.=) 'billing'::pg_catalog.regnamespace
				AND (tg.tgname OPERATOR(pg_catalog.~~) ('billing\_zz\_quota\_' OPERATOR(pg_catalog.||) kind OPERATOR(pg_catalog.||) '%') OR tg.tgname OPERATOR(pg_catalog.=) ('billing_quota_' OPERATOR(pg_catalog.||) kind OPERATOR(pg_catalog.||) '_truncate'))
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, relation);
	END LOOP;
END
$$;

-- ALTER TABLE ... ATTACH PARTITION of a table that holds rows, to a table
-- whose rows billing counts: refused (55000), its rows would not be counted.
-- ALTER TABLE ... DETACH PARTITION of the attached users table (at any
-- depth): refused (55000) while billing holds anything live, as a TRUNCATE.
-- From the statement's parse tree, at ddl_command_start (src/glue/quota_trigger.cpp).
CREATE FUNCTION billing._before_attach_partition() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_before_attach_partition';
CREATE EVENT TRIGGER billing_before_attach_partition ON ddl_command_start
	WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION billing._before_attach_partition();

-- The attached users table's TRUNCATE refusal on a partition that arrives
-- later (CREATE TABLE ... PARTITION OF, ATTACH PARTITION, at any depth), off
-- a partition detached (DETACH PARTITION of the users table is refused while
-- billing holds anything live: billing._before_attach_partition). PostgreSQL
-- clones no statement trigger onto partitions (attack finding 4.2). From the
-- statement's parse tree, at ddl_command_end (src/glue/quota_trigger.cpp).
CREATE FUNCTION billing._after_partition_change() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_after_partition_change';
CREATE EVENT TRIGGER billing_after_partition_change ON ddl_command_end
	WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE SCHEMA') EXECUTE FUNCTION billing._after_partition_change();

-- Internal: does the table have a deleted_at column (soft delete)?
CREATE FUNCTION billing._has_deleted_at(relation regclass) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
					WHERE a.attrelid OPERATOR(pg_catalog.=) billing._required($1, 'relation') AND a.attname OPERATOR(pg_catalog.=) 'deleted_at' AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
$$;

-- attach_* run with the caller's rights: the caller must own the table (as
-- CREATE TRIGGER requires) and be able to read the counted columns.
CREATE FUNCTION billing.attach_room_quota(rooms regclass, owner_column name) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
	counted bigint;
BEGIN
	PERFORM billing._required(rooms, 'rooms'), billing._required(owner_column, 'owner_column');
	PERFORM billing._check_attachable(rooms, ARRAY[owner_column]);
	IF billing._has_deleted_at(rooms) THEN
		PERFORM billing._check_attachable(rooms, ARRAY['deleted_at']::pg_catalog.name[]);
	END IF;
	att := billing._attachment_save('rooms', rooms, owner_column, NULL, NULL, NULL, billing._has_deleted_at(rooms));
	PERFORM billing._quota_attach(att);
	SELECT COALESCE(pg_catalog.sum(q.used), 0) INTO counted FROM billing.quota_counters q WHERE q.attachment_id OPERATOR(pg_catalog.=) att.id;
	RETURN counted;
END
$$;
COMMENT ON FUNCTION billing.attach_room_quota(regclass, name) IS
	'Enforces the plan''s room limit on the table; returns the rooms counted now';

CREATE FUNCTION billing.attach_participant_quota(participants regclass, room_column name, rooms regclass,
												 room_owner_column name) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
	room_key name;
	key_immediate boolean;
	counted bigint;
BEGIN
	PERFORM billing._required(participants, 'participants'), billing._required(room_column, 'room_column'),
			billing._required(rooms, 'rooms'), billing._required(room_owner_column, 'room_owner_column');
	PERFORM billing._check_attachable(participants, ARRAY[room_column]);
	IF billing._has_deleted_at(participants) THEN
		PERFORM billing._check_attachable(participants, ARRAY['deleted_at']::pg_catalog.name[]);
	END IF;
	SELECT a.attname, i.indimmediate INTO room_key, key_immediate
	  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
	 WHERE i.indrelid OPERATOR(pg_catalog.=) rooms AND i.indisprimary AND i.indnatts OPERATOR(pg_catalog.=) 1;
	PERFORM billing._check_attachable(rooms, ARRAY[room_owner_column]);
	IF room_key IS NULL THEN
		RAISE EXCEPTION 'table % has no single-column primary key', rooms
			USING ERRCODE = '22023', HINT = 'Participants are counted per room, named by the rooms'' primary key.';
	END IF;
	-- A deferrable key lets a transaction hold two rooms of one key until it
	-- commits, and the owner watch would hand the key's counter to the
	-- duplicate (attack finding 73). PostgreSQL's own foreign keys refuse to
	-- reference one; the trigger checks again (the key may be replaced later).
	IF NOT key_immediate THEN
		RAISE EXCEPTION 'cannot use a deferrable primary key of table % to find a room''s owner', rooms
			USING ERRCODE = '0A000',
				  DETAIL = pg_catalog.format('Column %I of table %s is a DEFERRABLE primary key: a transaction may hold two rooms with one key.', room_key, rooms),
				  HINT = 'Make the rooms table''s primary key NOT DEFERRABLE (drop and add it again), as a foreign key requires.';
	END IF;
	PERFORM billing._check_attachable(rooms, ARRAY[room_key]);
	att := billing._attachment_save('participants', participants, room_column, rooms, room_owner_column, room_key,
									billing._has_deleted_at(participants));
	PERFORM billing._quota_attach(att);
	SELECT COALESCE(pg_catalog.sum(q.used), 0) INTO counted FROM billing.quota_counters q WHERE q.attachment_id OPERATOR(pg_catalog.=) att.id;
	RETURN counted;
END
$$;
COMMENT ON FUNCTION billing.attach_participant_quota(regclass, name, regclass, name) IS
	'Enforces the plan''s participants-per-room limit on the table; returns the participants counted now';

-- The limit a plan sets for a quota: NULL = unlimited. The one reading of a
-- plan's limits, by the core's parser (ParseLimit), for the trigger, the
-- reports and the check when a plan is written: anything but a non-negative
-- integer or null is 22023.
CREATE FUNCTION billing._plan_limit(limits jsonb, quota text) RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_plan_limit';
-- The same, naming the plan in an error.
CREATE FUNCTION billing._plan_limit(limits jsonb, quota text, plan_code text) RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_plan_limit';

-- Plan limits are checked once, when a plan is written.
CREATE FUNCTION billing._plan_limits_valid() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._plan_limit(NEW.limits, 'rooms', NEW.code),
			billing._plan_limit(NEW.limits, 'participants_per_room', NEW.code);
	RETURN NEW;
END
$$;
CREATE TRIGGER limits_valid BEFORE INSERT OR UPDATE OF limits ON billing.subscription_plans
	FOR EACH ROW EXECUTE FUNCTION billing._plan_limits_valid();

CREATE FUNCTION billing.quota(user_id text, quota text, at timestamptz DEFAULT pg_catalog.now(),
							  OUT "limit" bigint, OUT used bigint, OUT remaining bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	plan billing.subscription_plans;
BEGIN
	PERFORM billing._required(user_id, 'user_id'), billing._required(quota, 'quota'), billing._valid_time(at, 'at');
	IF quota NOT IN ('rooms', 'participants_per_room') THEN
		RAISE EXCEPTION 'unknown quota "%"', quota
			USING ERRCODE = '22023', HINT = 'Quotas are rooms and participants_per_room.';
	END IF;
	plan := billing.effective_plan(user_id, at);
	"limit" := billing._plan_limit(plan.limits, quota);
	-- rooms: the user's rooms; participants_per_room: the fullest of their rooms
	SELECT COALESCE(CASE WHEN quota OPERATOR(pg_catalog.=) 'rooms' THEN pg_catalog.sum(q.used) ELSE pg_catalog.max(q.used) END, 0)
	  INTO used
	  FROM billing.quota_counters q JOIN billing.attachments a ON a.id OPERATOR(pg_catalog.=) q.attachment_id
	 WHERE q.owner_id OPERATOR(pg_catalog.=) quota.user_id AND a.kind OPERATOR(pg_catalog.=) CASE WHEN quota OPERATOR(pg_catalog.=) 'rooms' THEN 'rooms' ELSE 'participants' END;
	remaining := pg_catalog.int8larger("limit" OPERATOR(pg_catalog.-) used, 0);
END
$$;
COMMENT ON FUNCTION billing.quota(text, text, timestamptz) IS
	'Limit (NULL = unlimited), used and remaining for rooms or participants_per_room (the fullest room)';

CREATE FUNCTION billing.has_feature(user_id text, feature text, at timestamptz DEFAULT pg_catalog.now())
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._required($1, 'user_id'), billing._required($2, 'feature'), billing._valid_time($3, 'at');
	-- true, a positive number or a non-empty string switch a feature on
	SELECT CASE pg_catalog.jsonb_typeof(p.features OPERATOR(pg_catalog.->) $2)
			   WHEN 'boolean' THEN (p.features OPERATOR(pg_catalog.->>) $2)::boolean
			   WHEN 'number' THEN (p.features OPERATOR(pg_catalog.->>) $2)::numeric OPERATOR(pg_catalog.>) 0
			   WHEN 'string' THEN p.features OPERATOR(pg_catalog.->>) $2 OPERATOR(pg_catalog.<>) ''
			   ELSE false END
	  FROM billing.effective_plan($1, $3) p
$$;
COMMENT ON FUNCTION billing.has_feature(text, text, timestamptz) IS 'Whether the user''s effective plan has the feature';

CREATE FUNCTION billing.over_quota(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (user_id text, quota text, "limit" bigint, used bigint, room text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._valid_time($1, 'at');
	-- The owner's plan is the core's (effective_plan), a call per owner: only
	-- for the counters above the lowest limit any plan sets for their quota
	-- (one at or below it is within every plan's limit), and once per owner,
	-- not once per counter (scale audit: a call for every counter of every
	-- user, 40 s at 200,000 users, where nearly all are within Free's limits).
	WITH floors AS (
		SELECT pg_catalog.min(billing._plan_limit(p.limits, 'rooms')) AS rooms,
			   pg_catalog.min(billing._plan_limit(p.limits, 'participants_per_room')) AS participants
		  FROM billing.subscription_plans p),
	owners AS MATERIALIZED (
		SELECT q.owner_id, a.kind, q.key, q.used
		  FROM billing.quota_counters q JOIN billing.attachments a ON a.id OPERATOR(pg_catalog.=) q.attachment_id
		 CROSS JOIN floors f
		 WHERE q.owner_id OPERATOR(pg_catalog.<>) '' AND q.used OPERATOR(pg_catalog.>) 0
		   AND q.used OPERATOR(pg_catalog.>) CASE a.kind WHEN 'rooms' THEN f.rooms ELSE f.participants END),
	plans AS MATERIALIZED (
		SELECT o.owner_id, p.limits
		  FROM (SELECT DISTINCT w.owner_id FROM owners w) o CROSS JOIN LATERAL billing.effective_plan(o.owner_id, at) p),
	limited AS (
		SELECT o.*, billing._plan_limit(p.limits, CASE o.kind WHEN 'rooms' THEN 'rooms' ELSE 'participants_per_room' END) AS cap
		  FROM owners o JOIN plans p ON p.owner_id OPERATOR(pg_catalog.=) o.owner_id)
	SELECT l.owner_id, CASE l.kind WHEN 'rooms' THEN 'rooms' ELSE 'participants_per_room' END, l.cap, l.used,
		   CASE WHEN l.kind OPERATOR(pg_catalog.=) 'participants' THEN l.key END
	  FROM limited l
	 WHERE l.cap IS NOT NULL AND l.used OPERATOR(pg_catalog.>) l.cap
	 ORDER BY 1, 2, 5
$$;
COMMENT ON FUNCTION billing.over_quota(timestamptz) IS
	'Users (and rooms) whose usage exceeds their effective limits, e.g. after a downgrade';

-- Internal: repairs an attachment's counters to what _quota_count found and
-- returns what changed.
CREATE FUNCTION billing._quota_counters_repair(p_attachment integer, keys text[], owners text[], counts bigint[])
RETURNS TABLE (key text, counted_before bigint, counted_now bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	att billing.attachments;
	moved_keys text[];
	moved_owners text[];
	moved_days date[];
	moved_joins numeric[];
BEGIN
	PERFORM billing._required(keys, 'keys'), billing._required(owners, 'owners'), billing._required(counts, 'counts');
	SELECT * INTO att FROM billing.attachments a WHERE a.id OPERATOR(pg_catalog.=) billing._required(p_attachment, 'p_attachment');
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown attachment %', p_attachment USING ERRCODE = '22023';
	END IF;
	PERFORM billing._check_session_owns(att.relation);
	-- A counter naming another owner than its rows' (a room key another room
	-- had, before session 8): the joins no rollup has taken yet are the old
	-- owner's, then the counter takes the owner the table says.
	SELECT pg_catalog.array_agg(l.key), pg_catalog.array_agg(l.owner_id), pg_catalog.array_agg(l.usage_day),
		   pg_catalog.array_agg(l.usage_pending::pg_catalog.numeric)
	  INTO moved_keys, moved_owners, moved_days, moved_joins
	  FROM (SELECT q.key, q.owner_id, q.usage_day, q.usage_pending
			  FROM billing.quota_counters q
			  JOIN ROWS FROM (pg_catalog.unnest(keys), pg_catalog.unnest(owners)) AS a(k, o) ON a.k OPERATOR(pg_catalog.=) q.key
			 WHERE q.attachment_id OPERATOR(pg_catalog.=) p_attachment AND q.owner_id OPERATOR(pg_catalog.<>) a.o
			   AND q.owner_id OPERATOR(pg_catalog.<>) '' AND q.usage_pending OPERATOR(pg_catalog.>) 0 AND q.usage_day IS NOT NULL
			   FOR UPDATE OF q) l;
	IF moved_keys IS NOT NULL THEN
		UPDATE billing.quota_counters q SET usage_pending = 0
		 WHERE q.attachment_id OPERATOR(pg_catalog.=) p_attachment AND q.key OPERATOR(pg_catalog.=) ANY (moved_keys);
		-- as pending usage, not the daily totals the rollup upserts (attack finding 5.3)
		PERFORM billing._usage_pending_add(moved_owners, pg_catalog.array_fill(billing._quota_metric(p_attachment),
			ARRAY[pg_catalog.cardinality(moved_keys)]), moved_days, moved_joins);
	END IF;
	RETURN QUERY
	WITH actual AS (
		SELECT u.k, u.o, u.n FROM ROWS FROM (pg_catalog.unnest(keys), pg_catalog.unnest(owners), pg_catalog.unnest(counts)) AS u(k, o, n)),
	 diff AS (
		SELECT COALESCE(a.k, q.key) AS k, COALESCE(a.o, q.owner_id, '') AS o,
			   COALESCE(q.used, 0) AS before, COALESCE(a.n, 0) AS now
		  FROM actual a
		  FULL JOIN (SELECT * FROM billing.quota_counters c WHERE c.attachment_id OPERATOR(pg_catalog.=) p_attachment) q ON q.key OPERATOR(pg_catalog.=) a.k
		 WHERE COALESCE(q.used, 0) OPERATOR(pg_catalog.<>) COALESCE(a.n, 0) OR q.owner_id OPERATOR(pg_catalog.<>) a.o),
	 fixed AS (
		INSERT INTO billing.quota_counters AS c (attachment_id, key, owner_id, used)
		SELECT p_attachment, d.k, d.o, d.now FROM diff d
		ON CONFLICT (attachment_id, key) DO UPDATE
		   SET used = EXCLUDED.used, owner_id = EXCLUDED.owner_id, cap_valid_until = '-infinity', updated_at = pg_catalog.now()
		RETURNING c.key)
	SELECT d.k, d.before, d.now FROM diff d ORDER BY d.k;
END
$$;

-- Recounts every attached table and repairs counters that drifted (rows
-- written with the triggers disabled, say). Reads the tables with the
-- caller's rights (the caller must own them) and locks each against writes
-- while it counts it.
CREATE FUNCTION billing.reconcile_quotas()
RETURNS TABLE (relation regclass, key text, counted_before bigint, counted_now bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	att billing.attachments;
	found record;
BEGIN
	-- An attachment of a table that is gone (dropped while event triggers
	-- were off) is not this caller's to count: skipped, as the next drop's
	-- event trigger forgets it.
	FOR att IN SELECT * FROM billing.attachments a WHERE a.kind IN ('rooms', 'participants')
				  AND EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.relation)
				  AND (a.parent_relation IS NULL
					   OR EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.parent_relation))
				ORDER BY a.id LOOP
		PERFORM billing._check_session_owns(att.relation);
		EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', att.relation);
		found := billing._quota_count(att);
		RETURN QUERY SELECT att.relation, r.key, r.counted_before, r.counted_now
					   FROM billing._quota_counters_repair(att.id, found.keys, found.owners, found.counts) r;
	END LOOP;
END
$$;
COMMENT ON FUNCTION billing.reconcile_quotas() IS
	'Recounts attached tables, repairs drifted counters and returns what it repaired';
