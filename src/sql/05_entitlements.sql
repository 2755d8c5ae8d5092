-- The customer's credit balance in a currency: overpayments, negative
-- proration totals and what was paid toward voided invoices, less what
-- invoices took and what refunds took back. It pays the next invoice before any payment is due.
-- (C++, src/glue/lifecycle.cpp CreditBalance: the one definition, which the
-- lifecycle functions query through a kept plan.)
CREATE FUNCTION billing.credit_balance(user_id text, currency text DEFAULT 'usd')
RETURNS bigint
LANGUAGE c STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_credit_balance';
COMMENT ON FUNCTION billing.credit_balance(text, text) IS
	'The customer''s credit balance (minor units) in a currency, applied to the next invoice';

-- Internal: the id of the plan that applies to a user at `at`, decided by
-- the core (src/glue/lifecycle.cpp, billing::Project and billing::GrantsAt):
-- the subscription current at `at` projected to `at` as if maintenance had
-- run (renewals against the credit balance, dunning, trial and grace ends,
-- scheduled changes), nothing written.
CREATE FUNCTION billing._entitled_plan_id(user_id text, at timestamptz) RETURNS bigint
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'billing_entitled_plan_id';

-- The plan whose limits and features apply to a user at a given time (SPEC §2,
-- §3, §8), for any time whether or not maintenance has run since; Free for
-- users billing has never seen. The rule is the core's (_entitled_plan_id).
CREATE FUNCTION billing.effective_plan(user_id text, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscription_plans
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._required($1, 'user_id'), billing._valid_time($2, 'at');
	SELECT p.* FROM billing.subscription_plans p WHERE p.id OPERATOR(pg_catalog.=) billing._entitled_plan_id($1, $2)
$$;
COMMENT ON FUNCTION billing.effective_plan(text, timestamptz) IS
	'The plan whose limits and features apply to the user at the given time';

-- Internal: the ONE SQL mirror of the core's billing::GrantsAt, for set-based
-- reports that cannot call the core per row (plan_distribution through
-- billing._book_at): whether a subscription in `status` gives its plan at
-- `at`. grace_end is past_due_since + past_due_grace (NULL: not in dunning);
-- whether the subscription had started and not ended is the caller's.
-- IMMUTABLE plain SQL without SET, so the planner inlines it.
-- sql/23_entitlement_mirror.sql compares it with the core on every status and
-- every order of the times.
CREATE FUNCTION billing._grants_plan(status billing.subscription_status, trial_end timestamptz,
									 period_end timestamptz, grace_end timestamptz, at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
	-- (the enum compared as itself: a cast to text calls enum_out, which is
	-- STABLE, and an IMMUTABLE function calling it is not inlined)
	SELECT CASE
		   WHEN $1 OPERATOR(pg_catalog.=) 'trialing'::billing.subscription_status
			 THEN $2 IS NULL OR $2 OPERATOR(pg_catalog.>) $5
		   WHEN $1 OPERATOR(pg_catalog.=) 'active'::billing.subscription_status
			 THEN $4 IS NULL OR $4 OPERATOR(pg_catalog.>) $5
		   WHEN $1 OPERATOR(pg_catalog.=) 'past_due'::billing.subscription_status
			 THEN $4 IS NULL OR $4 OPERATOR(pg_catalog.>) $5
		   WHEN $1 OPERATOR(pg_catalog.=) 'canceled'::billing.subscription_status
			 THEN COALESCE($3 OPERATOR(pg_catalog.>) $5, false) AND ($4 IS NULL OR $4 OPERATOR(pg_catalog.>) $5)
		   ELSE false END
$$;

-- Internal, for sql/23_entitlement_mirror.sql: the core's GrantsAt itself.
CREATE FUNCTION billing._grants_plan_core(status text, trial_end timestamptz,
										  period_end timestamptz, grace_end timestamptz, at timestamptz)
RETURNS boolean LANGUAGE c IMMUTABLE AS 'MODULE_PATHNAME', 'billing_grants_plan_core';

-- Internal: the first time after `at` when time alone (no write) may change
-- the user's effective plan (a trial, period or grace end, an invoice falling
-- due), from the core's projection (billing::NextEntitlementChange), so also
-- for renewals maintenance has not issued yet. The quota cache keeps a limit
-- no longer than this.
CREATE FUNCTION billing._entitlement_changes_at(user_id text, at timestamptz) RETURNS timestamptz
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'billing_entitlement_changes_at';

-- Plans for a pricing page.
CREATE VIEW billing.pricing AS
	SELECT code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features
	  FROM billing.subscription_plans
	 WHERE active AND deleted_at IS NULL
	 ORDER BY sort_order, price_cents, code;
COMMENT ON VIEW billing.pricing IS 'Active plans with prices, trial days, limits and features, for a pricing page';
GRANT SELECT ON billing.pricing TO PUBLIC;

-- Internal: the application-table column a trigger argument names, as text.
CREATE FUNCTION billing._check_column(relation regclass, col name) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._required(relation, 'relation'), billing._required(col, 'col');
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
					WHERE a.attrelid OPERATOR(pg_catalog.=) relation AND a.attname OPERATOR(pg_catalog.=) col AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', col, relation USING ERRCODE = '42703';
	END IF;
END
$$;

-- Gives each new user of an attached users table a Free subscription, ends a
-- deleted user's subscriptions, and refuses a renamed id billing holds
-- anything live for. C++: the id is read as the writing user (its type's
-- output function), only that text reaches billing's code
-- (src/glue/quota_trigger.cpp).
CREATE FUNCTION billing._user_inserted() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_user_inserted';

-- Internal: refuses a table the caller may not attach by PostgreSQL's own
-- rules: the caller must own it (as CREATE TRIGGER requires) and be able to
-- read the columns billing counts; billing's own tables and the system
-- catalogs are never attached.
-- Internal: a type's base type (a domain's, through nested domains).
CREATE FUNCTION billing._base_type(t regtype) RETURNS regtype
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE d AS (
		SELECT ty.oid, ty.typbasetype FROM pg_catalog.pg_type ty WHERE ty.oid OPERATOR(pg_catalog.=) t
		UNION ALL
		SELECT ty.oid, ty.typbasetype FROM pg_catalog.pg_type ty JOIN d ON ty.oid OPERATOR(pg_catalog.=) d.typbasetype)
	SELECT d.oid::pg_catalog.regtype FROM d WHERE d.typbasetype OPERATOR(pg_catalog.=) 0
$$;

CREATE FUNCTION billing._check_attachable(relation regclass, columns name[]) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rel record;
	col name;
	key_type record;
BEGIN
	PERFORM billing._required(relation, 'relation'), billing._required(columns, 'columns');
	SELECT c.relname, c.relkind, c.relowner, c.relpersistence, n.nspname INTO rel
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
	 WHERE c.oid OPERATOR(pg_catalog.=) relation;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation with OID % does not exist', relation::pg_catalog.oid USING ERRCODE = '42P01';
	END IF;
	IF rel.nspname IN ('billing', 'pg_catalog', 'information_schema') OR rel.nspname OPERATOR(pg_catalog.~~) 'pg\_toast%' THEN
		RAISE EXCEPTION 'cannot attach billing to %', relation
			USING ERRCODE = '42501', DETAIL = 'Billing''s own tables and system catalogs cannot be attached.';
	END IF;
	IF rel.relkind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '% is not a table', relation USING ERRCODE = '42809';
	END IF;
	-- a temporary table goes without any event (session end, DISCARD ALL):
	-- its attachment would outlive it (attack finding 74)
	IF rel.relpersistence OPERATOR(pg_catalog.=) 't' THEN
		RAISE EXCEPTION 'billing cannot count the rows of temporary table %', relation
			USING ERRCODE = '0A000', HINT = 'Attach a permanent (or unlogged) table.';
	END IF;
	IF NOT pg_catalog.pg_has_role(rel.relowner, 'USAGE') THEN
		RAISE EXCEPTION 'must be owner of table %', relation
			USING ERRCODE = '42501', HINT = 'Billing is attached to a table by its owner, as CREATE TRIGGER requires.';
	END IF;
	FOREACH col IN ARRAY columns LOOP
		PERFORM billing._check_column(relation, col);
		IF NOT pg_catalog.has_column_privilege(relation, col, 'SELECT') THEN
			RAISE EXCEPTION 'permission denied for column % of table %', col, relation USING ERRCODE = '42501';
		END IF;
		-- A key is counted by its text: only types whose text is one value's
		-- alone, whatever the session's settings (not numeric's 42 and 42.0,
		-- bytea's two output styles, citext's cases), and no collation that
		-- calls two texts equal (attack finding 63).
		CONTINUE WHEN col OPERATOR(pg_catalog.=) 'deleted_at';
		SELECT pg_catalog.format_type(a.atttypid, NULL) AS type_name, billing._base_type(a.atttypid) AS base,
			   COALESCE((SELECT NOT co.collisdeterministic FROM pg_catalog.pg_collation co
						  WHERE co.oid OPERATOR(pg_catalog.=) a.attcollation), false) AS fuzzy
		  INTO key_type
		  FROM pg_catalog.pg_attribute a
		 WHERE a.attrelid OPERATOR(pg_catalog.=) relation AND a.attname OPERATOR(pg_catalog.=) col;
		IF key_type.base NOT IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype,
								 'pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype,
								 'pg_catalog.int8'::pg_catalog.regtype, 'pg_catalog.uuid'::pg_catalog.regtype) THEN
			RAISE EXCEPTION 'billing cannot count keys of type %', key_type.type_name
				USING ERRCODE = '42804', DETAIL = pg_catalog.format('Column %I of %s is a key billing counts by its text.', col, relation),
					  HINT = 'Use a key column of type text, varchar, smallint, integer, bigint or uuid.';
		END IF;
		IF key_type.fuzzy THEN
			RAISE EXCEPTION 'billing cannot count keys with a nondeterministic collation'
				USING ERRCODE = '0A000', DETAIL = pg_catalog.format('Column %I of %s compares texts that differ as equal.', col, relation),
					  HINT = 'Give the key column a deterministic collation, or store its keys normalised (lower case, say).';
		END IF;
	END LOOP;
END
$$;

-- Internal: a Free subscription for a user that has no current one.
CREATE FUNCTION billing._start_free(user_id text, at timestamptz) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO billing.subscriptions
		(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start)
	SELECT $1, p.id, 'active', p.price_cents, p.currency, p.billing_interval, $2, $2
	  FROM billing.subscription_plans p WHERE p.code OPERATOR(pg_catalog.=) 'free'
	ON CONFLICT (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL DO NOTHING
$$;

-- Internal: the core's one user id rule (not empty, at most 255 bytes, 22023
-- otherwise), for the SQL routes that take a user id (record_usage,
-- attach_users' backfill); returns the id.
CREATE FUNCTION billing._valid_user_id(user_id text) RETURNS text
LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'billing_valid_user_id';

-- Internal: Free subscriptions for the given users that have no current one.
CREATE FUNCTION billing._start_free_many(user_ids text[], at timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	started bigint;
BEGIN
	PERFORM billing._required(user_ids, 'user_ids'), billing._valid_time(at, 'at');
	-- the one user id rule (22023 over 255 bytes), as every route checks it
	PERFORM billing._valid_user_id(u.id) FROM pg_catalog.unnest(user_ids) AS u(id) WHERE u.id OPERATOR(pg_catalog.<>) '';
	INSERT INTO billing.subscriptions
		(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start)
	SELECT u.id, p.id, 'active', p.price_cents, p.currency, p.billing_interval, at, at
	  FROM pg_catalog.unnest(user_ids) AS u(id) CROSS JOIN billing.subscription_plans p
	 WHERE p.code OPERATOR(pg_catalog.=) 'free' AND u.id OPERATOR(pg_catalog.<>) ''
	ON CONFLICT (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL DO NOTHING;
	GET DIAGNOSTICS started = ROW_COUNT;
	RETURN started;
END
$$;

-- With the caller's rights: the caller owns the users table and reads its ids.
CREATE FUNCTION billing.attach_users(users regclass, id_column name) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	ids text[];
	old_trigger name;
BEGIN
	PERFORM billing._required(users, 'users'), billing._required(id_column, 'id_column');
	PERFORM billing._check_attachable(users, ARRAY[id_column]);
	PERFORM billing._attachment_save('users', users, id_column, NULL, NULL, NULL, false);

	FOR old_trigger IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) tg.tgfoid
						WHERE tg.tgrelid OPERATOR(pg_catalog.=) users
						  AND tg.tgname OPERATOR(pg_catalog.=) ANY ('{billing_user_inserted,billing_user_renamed,billing_user_truncated}'::pg_catalog.name[])
						  AND p.pronamespace OPERATOR(pg_catalog.=) 'billing'::pg_catalog.regnamespace LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', old_trigger, users);
	END LOOP;
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER billing_user_inserted AFTER INSERT OR DELETE ON %s
		 FOR EACH ROW EXECUTE FUNCTION billing._user_inserted(%L)', users, id_column);
	-- A renamed id (attack finding 70): refused while billing holds anything
	-- live for the old id. No "UPDATE OF" (an id set by the application's own
	-- BEFORE trigger is not in the SET list); the WHEN compares the id alone,
	-- so an update that leaves it (nearly all) queues no event.
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER billing_user_renamed AFTER UPDATE ON %s
		 FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) EXECUTE FUNCTION billing._user_inserted(%L)',
		users, id_column, id_column, id_column);
	-- A TRUNCATE deletes every user without a row trigger: refused while
	-- billing holds anything live (the core's UsersTruncateRefusal).
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER billing_user_truncated BEFORE TRUNCATE ON %s
		 FOR EACH STATEMENT EXECUTE FUNCTION billing._user_inserted(%L)', users, id_column);
	-- PostgreSQL clones row triggers onto partitions, not statement triggers:
	-- the refusal goes on every partition, at every level, or a TRUNCATE of
	-- one deletes its users unseen (attack finding 4.2). A partition added
	-- later gets it from billing._after_partition_change.
	DECLARE
		part regclass;
	BEGIN
		FOR part IN SELECT t.relid FROM pg_catalog.pg_partition_tree(users) t WHERE t.level OPERATOR(pg_catalog.>) 0 LOOP
			IF EXISTS (SELECT FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) tg.tgfoid
						WHERE tg.tgrelid OPERATOR(pg_catalog.=) part AND tg.tgname OPERATOR(pg_catalog.=) 'billing_user_truncated'
						  AND p.pronamespace OPERATOR(pg_catalog.=) 'billing'::pg_catalog.regnamespace) THEN
				EXECUTE pg_catalog.format('DROP TRIGGER billing_user_truncated ON %s', part);
			END IF;
			EXECUTE pg_catalog.format(
				'CREATE TRIGGER billing_user_truncated BEFORE TRUNCATE ON %s
				 FOR EACH STATEMENT EXECUTE FUNCTION billing._user_inserted(%L)', part, id_column);
		END LOOP;
	END;

	-- the ids as their type's output function writes them, as the trigger reads them
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT pg_catalog.format(''%%s'', u.%1$I)) FROM %2$s u WHERE u.%1$I IS NOT NULL',
		id_column, users) INTO ids;
	RETURN billing._start_free_many(COALESCE(ids, '{}'), pg_catalog.now());
END
$$;
COMMENT ON FUNCTION billing.attach_users(regclass, name) IS
	'Gives every existing and every new user of the table a Free subscription; returns how many were backfilled';

-- Removes billing's triggers from an application table (only triggers whose
-- function is billing's, dropped with the caller's rights: the caller must
-- own the table); its rows are untouched.
CREATE FUNCTION billing.detach(relation regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t record;
BEGIN
	PERFORM billing._check_session_owns(relation);
	-- The table's own attachments' triggers, wherever they are: a
	-- participants table's attachment also watches its rooms table. The owner
	-- watch another table's participants attachment keeps on this (rooms)
	-- table stays: it is that attachment's, which still needs it (attack
	-- finding 72: detaching and re-attaching the rooms table dropped it, and
	-- a room given to a Free user kept an Enterprise counter).
	FOR t IN SELECT tg.tgname, tg.tgrelid::pg_catalog.regclass AS rel
			   FROM pg_catalog.pg_trigger tg JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) tg.tgfoid
			  WHERE p.pronamespace OPERATOR(pg_catalog.=) 'billing'::pg_catalog.regnamespace AND NOT tg.tgisinternal AND tg.tgparentid OPERATOR(pg_catalog.=) 0
				AND ((tg.tgrelid OPERATOR(pg_catalog.=) relation
					  AND NOT EXISTS (SELECT FROM billing.attachments a
									   WHERE a.kind OPERATOR(pg_catalog.=) 'participants'
										 AND a.relation OPERATOR(pg_catalog.<>) detach.relation
										 AND a.parent_relation OPERATOR(pg_catalog.=) detach.relation
										 AND tg.tgname OPERATOR(pg_catalog.=) ('billing_quota_room_owner_' OPERATOR(pg_catalog.||) a.id)))
					 OR (tg.tgrelid, tg.tgname) IN (SELECT a.parent_relation, 'billing_quota_room_owner_' OPERATOR(pg_catalog.||) a.id
													  FROM billing.attachments a
													 WHERE a.relation OPERATOR(pg_catalog.=) detach.relation AND a.parent_relation IS NOT NULL)
					 -- the users table's TRUNCATE refusal on its partitions (attach_users)
					 OR (tg.tgname OPERATOR(pg_catalog.=) 'billing_user_truncated'
						 AND tg.tgrelid OPERATOR(pg_catalog.=) ANY (SELECT pt.relid FROM pg_catalog.pg_partition_tree(relation) pt
																	 WHERE pt.level OPERATOR(pg_catalog.>) 0)))
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
	END LOOP;
	PERFORM billing._attachment_forget(relation);
END
$$;
COMMENT ON FUNCTION billing.detach(regclass) IS 'Removes billing''s triggers from an application table';

-- DROP EXTENSION billing first detaches every application table, so the
-- triggers on them (which depend on the extension's functions) do not block it
-- and the tables and rows stay as they were.
-- Recognised from the statement's parse tree (DROP EXTENSION naming billing),
-- never from its text; at ddl_command_start, because the triggers would make
-- the drop fail before sql_drop could act (src/glue/quota_trigger.cpp).
CREATE FUNCTION billing._before_drop_extension() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_before_drop_extension';
CREATE EVENT TRIGGER billing_before_drop_extension ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION') EXECUTE FUNCTION billing._before_drop_extension();

-- A dropped application table (or its schema, or a participants table's
-- rooms table) takes its attachment along:
-- its counters' pending usage is kept in billing.usage_daily first, then the
-- attachment and its counters are deleted, so quota() and reconcile_quotas()
-- never read a table that is gone, and attaching a new table starts afresh.
CREATE FUNCTION billing._after_drop_table() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	gone integer[];
	owners text[];
	metrics text[];
	days date[];
	quantities numeric[];
BEGIN
	-- Every attachment whose table or rooms table is gone, whatever dropped
	-- it (DROP TABLE, DROP TYPE ... CASCADE of a typed table, DROP EXTENSION
	-- ... CASCADE, a table dropped while event triggers were off): a handful
	-- of rows, read whole.
	SELECT pg_catalog.array_agg(a.id) INTO gone
	  FROM billing.attachments a
	 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.relation)
		OR (a.parent_relation IS NOT NULL
			AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) a.parent_relation));
	IF gone IS NULL THEN
		RETURN;
	END IF;
	-- Locked: a rollup that took a counter's pending usage and has not
	-- committed yet is waited for, and its zero read (never added twice).
	SELECT pg_catalog.array_agg(l.owner_id), pg_catalog.array_agg(billing._quota_metric(l.attachment_id)),
		   pg_catalog.array_agg(l.usage_day), pg_catalog.array_agg(l.usage_pending::pg_catalog.numeric)
	  INTO owners, metrics, days, quantities
	  FROM (SELECT q.owner_id, q.attachment_id, q.usage_day, q.usage_pending FROM billing.quota_counters q
			 WHERE q.attachment_id OPERATOR(pg_catalog.=) ANY (gone) AND q.usage_pending OPERATOR(pg_catalog.>) 0
			   AND q.owner_id OPERATOR(pg_catalog.<>) '' AND q.usage_day IS NOT NULL
			   FOR UPDATE) l;
	-- as pending usage, not the daily totals the rollup upserts (attack finding 5.3)
	PERFORM billing._usage_pending_add(owners, metrics, days, quantities);
	DELETE FROM billing.quota_counters q WHERE q.attachment_id OPERATOR(pg_catalog.=) ANY (gone);
	DELETE FROM billing.attachments a WHERE a.id OPERATOR(pg_catalog.=) ANY (gone);
END
$$;
-- No WHEN TAG: a table goes with DROP TYPE ... CASCADE, DROP EXTENSION ...
-- CASCADE or DROP FOREIGN TABLE too (attack findings 61, 64).
CREATE EVENT TRIGGER billing_after_drop_table ON sql_drop EXECUTE FUNCTION billing._after_drop_table();

-- A DROP of the attached users table, or of a partition of it (DROP TABLE,
-- DROP ... CASCADE of a parent, DROP SCHEMA, DROP OWNED), takes its users
-- away as a TRUNCATE would, with no row trigger: refused (55000) while
-- billing holds anything live, by the TRUNCATE's measure (the core's
-- UsersDropRefusal; src/glue/users_drop.cpp). Seen at sql_drop by the
-- billing_user_truncated trigger every such table carries, dropped with it.
CREATE FUNCTION billing._after_users_dropped() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_after_users_dropped';
CREATE EVENT TRIGGER billing_after_users_dropped ON sql_drop EXECUTE FUNCTION billing._after_users_dropped();
