-- Usage (SPEC §4): events in billing.usage_records, rolled up incrementally
-- into daily per-user, per-metric totals in billing.usage_daily. Days are UTC.
-- The quota triggers count rooms_created and participants_joined in their
-- counter rows (usage_pending), so an insert writes nothing more; the rollup
-- moves those counts into usage_daily too.

-- What has not been rolled up yet: one row per usage record, written by a
-- statement-level trigger in the same transaction as the record and deleted
-- by the rollup that adds it to billing.usage_daily. The rollup reads only
-- this small table, never the records' history; a record committed late by a
-- concurrent transaction is still here for the next rollup (there is no
-- watermark it could fall behind). The records themselves are never updated.
CREATE TABLE billing.usage_pending (
	record_id bigint PRIMARY KEY,
	user_id text NOT NULL,
	metric text NOT NULL,
	quantity bigint NOT NULL,
	recorded_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	deleted_at timestamptz
);
COMMENT ON TABLE billing.usage_pending IS 'Usage records not rolled up into billing.usage_daily yet';
CREATE INDEX usage_pending_user_metric ON billing.usage_pending (user_id, metric, recorded_at);
CREATE INDEX usage_pending_recorded ON billing.usage_pending (recorded_at);

CREATE FUNCTION billing._usage_recorded() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	-- pg_restore loads the dumped pending rows itself
	IF billing._restoring() THEN
		RETURN NULL;
	END IF;
	INSERT INTO billing.usage_pending (record_id, user_id, metric, quantity, recorded_at)
	SELECT n.id, n.user_id, n.metric, n.quantity, n.recorded_at FROM new_rows n
	 WHERE n.deleted_at IS NULL AND NOT n.rolled_up;
	-- record_usage stores a key before its record; a record inserted directly
	-- with a key another record holds fails here (23505), as a unique index would.
	-- The key's record is one probe of the primary key per new record (a
	-- correlated subquery, never a join): the session keeps this plan, and
	-- as an anti join planned for a first statement of many records it read
	-- every key ever stored for each later record_usage (scale audit: 165 ms
	-- at 200,000 users), or, planned on an empty table, every key the
	-- statement itself had added for each record (a bulk load quadratic).
	INSERT INTO billing.usage_keys (user_id, idempotency_key, record_id, recorded_at)
	SELECT n.user_id, n.idempotency_key, n.id, n.recorded_at FROM new_rows n
	 WHERE n.idempotency_key IS NOT NULL
	   AND (SELECT k.record_id FROM billing.usage_keys k
			 WHERE k.user_id OPERATOR(pg_catalog.=) n.user_id AND k.idempotency_key OPERATOR(pg_catalog.=) n.idempotency_key)
		   IS DISTINCT FROM n.id;
	RETURN NULL;
END
$$;

-- A record edited before its rollup is rolled up as edited; one deleted or
-- soft-deleted before its rollup is not rolled up.
CREATE FUNCTION billing._usage_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	-- Each statement EXECUTEd, planned for this statement's transition table:
	-- a plan the session kept from its first update or delete of many records
	-- joined every later one, even of one record, to the whole of
	-- usage_keys and usage_pending (scale audit: 133 ms for one record at
	-- 200,000 users); planned for its own size, one record is an index probe.
	IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
		EXECUTE 'DELETE FROM billing.usage_pending p USING old_rows o WHERE p.record_id OPERATOR(pg_catalog.=) o.id';
		-- a record deleted outright frees its key (a soft-deleted one keeps it)
		EXECUTE 'DELETE FROM billing.usage_keys k USING old_rows o WHERE k.record_id OPERATOR(pg_catalog.=) o.id';
		RETURN NULL;
	END IF;
	-- a record whose user, key or time was edited: its key follows
	EXECUTE 'DELETE FROM billing.usage_keys k USING new_rows n
	 WHERE k.record_id OPERATOR(pg_catalog.=) n.id
	   AND (k.user_id, k.idempotency_key, k.recorded_at) IS DISTINCT FROM (n.user_id, n.idempotency_key, n.recorded_at)';
	EXECUTE 'INSERT INTO billing.usage_keys (user_id, idempotency_key, record_id, recorded_at)
	SELECT n.user_id, n.idempotency_key, n.id, n.recorded_at FROM new_rows n
	 WHERE n.idempotency_key IS NOT NULL
	   AND NOT EXISTS (SELECT FROM billing.usage_keys k WHERE k.record_id OPERATOR(pg_catalog.=) n.id)';
	EXECUTE 'DELETE FROM billing.usage_pending p USING new_rows n WHERE p.record_id OPERATOR(pg_catalog.=) n.id AND n.deleted_at IS NOT NULL';
	EXECUTE 'UPDATE billing.usage_pending p
	   SET user_id = n.user_id, metric = n.metric, quantity = n.quantity, recorded_at = n.recorded_at
	  FROM new_rows n
	 WHERE p.record_id OPERATOR(pg_catalog.=) n.id
	   AND (p.user_id, p.metric, p.quantity, p.recorded_at) IS DISTINCT FROM (n.user_id, n.metric, n.quantity, n.recorded_at)';
	RETURN NULL;
END
$$;

CREATE TRIGGER usage_recorded AFTER INSERT ON billing.usage_records
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._usage_recorded();
CREATE TRIGGER usage_updated AFTER UPDATE ON billing.usage_records
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._usage_changed();
CREATE TRIGGER usage_deleted AFTER DELETE ON billing.usage_records
	REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION billing._usage_changed();

CREATE FUNCTION billing.record_usage(user_id text, metric text, quantity bigint DEFAULT 1,
									 at timestamptz DEFAULT pg_catalog.now(), idempotency_key text DEFAULT NULL)
RETURNS billing.usage_records
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	rec billing.usage_records;
	new_id bigint;
BEGIN
	-- Parameters share the columns' names; in SQL, a bare name is the column.
	-- (each NULL argument named, as billing._required names it)
	IF user_id IS NULL THEN
		RAISE EXCEPTION 'argument "user_id" must not be null' USING ERRCODE = '22004';
	ELSIF metric IS NULL THEN
		RAISE EXCEPTION 'argument "metric" must not be null' USING ERRCODE = '22004';
	ELSIF quantity IS NULL THEN
		RAISE EXCEPTION 'argument "quantity" must not be null' USING ERRCODE = '22004';
	ELSIF at IS NULL THEN
		RAISE EXCEPTION 'argument "at" must not be null' USING ERRCODE = '22004';
	END IF;
	-- the one user id rule (empty or over 255 bytes: 22023), as every route checks it
	PERFORM billing._valid_user_id($1);
	IF metric OPERATOR(pg_catalog.!~) '^[a-z][a-z0-9_.]*$' THEN
		RAISE EXCEPTION 'invalid metric name "%"', metric
			USING ERRCODE = '22023', DETAIL = 'Metric names are lower-case letters, digits, "_" and ".", starting with a letter.';
	END IF;
	IF quantity OPERATOR(pg_catalog.<) 0 THEN
		RAISE EXCEPTION 'usage quantity must not be negative' USING ERRCODE = '22023',
			DETAIL = pg_catalog.format('Quantity given: %s.', quantity);
	END IF;
	-- Bounded like a payment, so one record cannot push a total near the
	-- bigint range (the sums below saturate anyway).
	IF quantity OPERATOR(pg_catalog.>) 1000000000000 THEN
		RAISE EXCEPTION 'usage quantity is out of range' USING ERRCODE = '22003',
			DETAIL = pg_catalog.format('Quantity given: %s; at most 10^12 per record.', quantity);
	END IF;
	-- (they are indexed: a longer value could not be stored, 54000)
	IF pg_catalog.octet_length(metric) OPERATOR(pg_catalog.>) 200 OR pg_catalog.octet_length(idempotency_key) OPERATOR(pg_catalog.>) 1000 THEN
		RAISE EXCEPTION 'metric or idempotency key too long' USING ERRCODE = '22023',
			DETAIL = 'Idempotency keys have at most 1000 bytes, metric names 200.';
	END IF;
	IF NOT (at OPERATOR(pg_catalog.>=) '0001-01-01 00:00:00+00' AND at OPERATOR(pg_catalog.<) '10000-01-01 00:00:00+00') THEN
		RAISE EXCEPTION 'argument "at" is out of range' USING ERRCODE = '22008',
			DETAIL = pg_catalog.format('The timestamp %s is outside the years 0001 to 9999 (UTC) that billing supports.', at);
	END IF;
	IF $5 IS NOT NULL THEN
		-- The key first: a second call with it waits here for the first to
		-- commit (or roll back), then returns the first call's record.
		INSERT INTO billing.usage_keys AS k (user_id, idempotency_key, record_id, recorded_at)
		VALUES ($1, $5, pg_catalog.nextval('billing.usage_records_id_seq'::pg_catalog.regclass), $4)
		ON CONFLICT ON CONSTRAINT usage_keys_pkey DO NOTHING
		RETURNING k.record_id INTO new_id;
		IF new_id IS NULL THEN
			SELECT r.* INTO rec
			  FROM billing.usage_keys k
			  JOIN billing.usage_records r ON r.id OPERATOR(pg_catalog.=) k.record_id AND r.recorded_at OPERATOR(pg_catalog.=) k.recorded_at
			 WHERE k.user_id OPERATOR(pg_catalog.=) $1 AND k.idempotency_key OPERATOR(pg_catalog.=) $5;
			RETURN rec;
		END IF;
	END IF;
	INSERT INTO billing.usage_records AS r (id, user_id, subscription_id, metric, quantity, recorded_at, idempotency_key)
	VALUES (COALESCE(new_id, pg_catalog.nextval('billing.usage_records_id_seq'::pg_catalog.regclass)), $1,
			(SELECT s.id FROM billing.subscriptions s
			  WHERE s.user_id OPERATOR(pg_catalog.=) $1 AND s.ended_at IS NULL AND s.deleted_at IS NULL),
			$2, $3, $4, $5)
	RETURNING * INTO rec;
	RETURN rec;
END
$$;
COMMENT ON FUNCTION billing.record_usage(text, text, bigint, timestamptz, text) IS
	'Records metered usage; a repeated idempotency key records nothing new';

-- Internal: adds to the daily totals, per month present, with one upsert
-- into the month's partition, or into the default one while the month has
-- none. The partition is looked up among usage_daily's attached partitions
-- and used only if it belongs to the totals' owner; otherwise (a dump
-- restored with --no-owner leaves partitions to whoever restored it) the
-- month goes through the parent: an UPDATE of the totals that exist and an
-- INSERT of the rest, again on a 23505 from a concurrent writer (the parent
-- has no key an ON CONFLICT could name: 02_tables.sql). A month detached to
-- archive it is never written. The default partition is locked first (ROW
-- EXCLUSIVE): a month's partition being made (which takes it ACCESS
-- EXCLUSIVE NOWAIT) is then either committed and found, or not started.
-- Entries for the same (user, metric, day) are summed; a total saturates at
-- the bigint maximum.
CREATE FUNCTION billing._usage_daily_add(user_ids text[], metrics text[], days date[], quantities numeric[])
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	month_start date;
	month_end date;
	part text;
BEGIN
	IF pg_catalog.cardinality(days) IS NULL OR pg_catalog.cardinality(days) OPERATOR(pg_catalog.=) 0 THEN
		RETURN;
	END IF;
	LOCK TABLE billing.usage_daily_default IN ROW EXCLUSIVE MODE;
	FOR month_start IN
		SELECT DISTINCT pg_catalog.date_trunc('month', x.day::pg_catalog.timestamp)::pg_catalog.date
		  FROM pg_catalog.unnest(days) x(day) ORDER BY 1
	LOOP
		month_end := (month_start::pg_catalog.timestamp OPERATOR(pg_catalog.+) interval '1 month')::pg_catalog.date;
		part := 'usage_daily_' OPERATOR(pg_catalog.||) pg_catalog.to_char(month_start::pg_catalog.timestamp, 'YYYY_MM');
		-- the month's attached partition: its name if it is the totals' owner's, else NULL
		SELECT CASE WHEN c.relowner OPERATOR(pg_catalog.=) p.relowner THEN c.relname::pg_catalog.text END INTO part
		  FROM pg_catalog.pg_inherits i
		  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
		  JOIN pg_catalog.pg_class p ON p.oid OPERATOR(pg_catalog.=) i.inhparent
		 WHERE i.inhparent OPERATOR(pg_catalog.=) 'billing.usage_daily'::pg_catalog.regclass AND c.relname OPERATOR(pg_catalog.=) part
		   AND c.relnamespace OPERATOR(pg_catalog.=) 'billing'::pg_catalog.regnamespace;
		IF NOT FOUND THEN
			part := 'usage_daily_default';
		END IF;
		IF part IS NOT NULL THEN
			EXECUTE pg_catalog.format(
				'INSERT INTO billing.%I AS d (user_id, metric, day, quantity)'
				' SELECT x.user_id, x.metric, x.day, LEAST(pg_catalog.sum(x.quantity), 9223372036854775807)::pg_catalog.int8'
				'   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4))'
				'        x(user_id, metric, day, quantity)'
				'  WHERE x.day OPERATOR(pg_catalog.>=) $5 AND x.day OPERATOR(pg_catalog.<) $6'
				'  GROUP BY 1, 2, 3'
				' ON CONFLICT (user_id, metric, day) DO UPDATE'
				' SET quantity = LEAST(d.quantity::pg_catalog.numeric OPERATOR(pg_catalog.+) EXCLUDED.quantity::pg_catalog.numeric,'
				' 9223372036854775807)::pg_catalog.int8', part)
			USING user_ids, metrics, days, quantities, month_start, month_end;
			CONTINUE;
		END IF;
		LOOP
			BEGIN
				WITH input AS (
					SELECT x.user_id, x.metric, x.day,
						   LEAST(pg_catalog.sum(x.quantity), 9223372036854775807)::pg_catalog.int8 AS quantity
					  FROM ROWS FROM (pg_catalog.unnest(user_ids), pg_catalog.unnest(metrics), pg_catalog.unnest(days),
									  pg_catalog.unnest(quantities)) x(user_id, metric, day, quantity)
					 WHERE x.day OPERATOR(pg_catalog.>=) month_start AND x.day OPERATOR(pg_catalog.<) month_end
					 GROUP BY 1, 2, 3),
				updated AS (
					UPDATE billing.usage_daily d
					   SET quantity = LEAST(d.quantity::pg_catalog.numeric OPERATOR(pg_catalog.+) i.quantity::pg_catalog.numeric,
											9223372036854775807)::pg_catalog.int8
					  FROM input i
					 WHERE d.day OPERATOR(pg_catalog.>=) month_start AND d.day OPERATOR(pg_catalog.<) month_end
					   AND d.user_id OPERATOR(pg_catalog.=) i.user_id AND d.metric OPERATOR(pg_catalog.=) i.metric
					   AND d.day OPERATOR(pg_catalog.=) i.day
					RETURNING d.user_id, d.metric, d.day)
				INSERT INTO billing.usage_daily (user_id, metric, day, quantity)
				SELECT i.user_id, i.metric, i.day, i.quantity FROM input i
				 WHERE NOT EXISTS (SELECT FROM updated u WHERE u.user_id OPERATOR(pg_catalog.=) i.user_id
									  AND u.metric OPERATOR(pg_catalog.=) i.metric AND u.day OPERATOR(pg_catalog.=) i.day);
				EXIT;
			EXCEPTION WHEN unique_violation THEN
				-- another writer added one of these days first: again, adding to it
			END;
		END LOOP;
	END LOOP;
END
$$;

-- Internal: counts taken off quota counters inside an application's
-- transaction (a counter's first count of a new day, a room given to
-- another owner or its key taken by a new room, a dropped attachment, a
-- reconcile's owner mend) are kept as pending usage of their day, each a row
-- of its own, which the next rollup adds to the daily totals as it adds a
-- record. Never billing.usage_daily itself: the rollup upserts its
-- (user, metric, day) rows, and would wait for such a transaction left open
-- (attack finding 5.3). record_id is the next record id negated: no
-- record's, and no other entry's. usage() and usage_trends() read the
-- pending rows by their time (the day's UTC midnight).
CREATE FUNCTION billing._usage_pending_add(user_ids text[], metrics text[], days date[], quantities numeric[])
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO billing.usage_pending (record_id, user_id, metric, quantity, recorded_at)
	SELECT OPERATOR(pg_catalog.-) pg_catalog.nextval('billing.usage_records_id_seq'::pg_catalog.regclass),
		   x.user_id, x.metric, LEAST(x.quantity, 9223372036854775807)::pg_catalog.int8,
		   x.day::pg_catalog.timestamp AT TIME ZONE 'UTC'
	  FROM ROWS FROM (pg_catalog.unnest(user_ids), pg_catalog.unnest(metrics), pg_catalog.unnest(days),
					  pg_catalog.unnest(quantities)) AS x(user_id, metric, day, quantity)
	 WHERE x.quantity OPERATOR(pg_catalog.>) 0 AND x.day IS NOT NULL
$$;

-- Adds what arrived since the last rollup (records not yet rolled up, and the
-- counts the quota triggers hold) to the daily totals, up to `upto`.
-- Returns how many records and counters it moved.
CREATE FUNCTION billing.rollup_usage(upto timestamptz DEFAULT pg_catalog.now()) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	records bigint;
	counters bigint;
	upto_day date := (upto AT TIME ZONE 'UTC')::pg_catalog.date;
	user_ids text[];
	metrics text[];
	days date[];
	quantities numeric[];
BEGIN
	PERFORM billing._valid_time(upto, 'upto');
	-- Only the pending set is read. Deleting each row under its row lock makes
	-- concurrent rollups add it once (the second waits, then finds it gone).
	WITH taken AS (
		DELETE FROM billing.usage_pending p
		 WHERE p.recorded_at OPERATOR(pg_catalog.<) upto
		RETURNING p.user_id, p.metric, (p.recorded_at AT TIME ZONE 'UTC')::pg_catalog.date AS day, p.quantity),
	summed AS (
		SELECT t.user_id, t.metric, t.day, pg_catalog.sum(t.quantity) AS quantity, pg_catalog.count(*) AS n
		  FROM taken t GROUP BY 1, 2, 3)
	SELECT COALESCE(pg_catalog.sum(s.n), 0), pg_catalog.array_agg(s.user_id), pg_catalog.array_agg(s.metric),
		   pg_catalog.array_agg(s.day), pg_catalog.array_agg(s.quantity)
	  INTO records, user_ids, metrics, days, quantities FROM summed s;
	PERFORM billing._usage_daily_add(user_ids, metrics, days, quantities);

	-- The quota counters' pending usage, found through the index on
	-- usage_day: a counter of a day before upto's is closed here (usage_day
	-- NULL, usage_pending 0, under its row lock), so this reads the counters
	-- counted since their day was last closed, never every counter. Nothing
	-- counts into a closed counter without the slow path, which opens it for
	-- its day again (the fast path counts only into a counter whose
	-- usage_day is the inserting transaction's day: one that waited for this
	-- lock finds the day closed). A counter of upto's day keeps its day.
	-- Pending usage of nobody (owner '') is dropped when its day is closed,
	-- as the slow path drops it when a new day begins.
	-- A counter another transaction holds (a room being inserted, say) is
	-- skipped, not waited for (attack finding 5.2: an application
	-- transaction left open after a room insert stopped every maintenance
	-- run here): it keeps its day and pending usage, which usage() counts
	-- from the counter, and the next rollup takes them.
	WITH locked AS (
		SELECT q.attachment_id, q.key, q.owner_id, q.usage_day, q.usage_pending
		  FROM billing.quota_counters q
		 WHERE q.usage_day OPERATOR(pg_catalog.<=) upto_day
		   AND (q.usage_day OPERATOR(pg_catalog.<) upto_day
				OR (q.usage_pending OPERATOR(pg_catalog.>) 0 AND q.owner_id OPERATOR(pg_catalog.<>) ''))
		   FOR UPDATE SKIP LOCKED),
	cleared AS (
		UPDATE billing.quota_counters q
		   SET usage_pending = 0,
			   usage_day = CASE WHEN l.usage_day OPERATOR(pg_catalog.<) upto_day THEN NULL ELSE l.usage_day END
		  FROM locked l WHERE q.attachment_id OPERATOR(pg_catalog.=) l.attachment_id AND q.key OPERATOR(pg_catalog.=) l.key
		RETURNING l.owner_id, l.attachment_id, l.usage_day, l.usage_pending),
	taken AS (
		SELECT c.owner_id, billing._quota_metric(c.attachment_id) AS metric, c.usage_day, c.usage_pending
		  FROM cleared c
		 WHERE c.usage_pending OPERATOR(pg_catalog.>) 0 AND c.owner_id OPERATOR(pg_catalog.<>) ''
		   -- a counter its attachment left behind (a detach in REPEATABLE READ
		   -- that did not see it): its table is no longer billing's
		   AND billing._quota_metric(c.attachment_id) IS NOT NULL)
	SELECT pg_catalog.count(*), pg_catalog.array_agg(t.owner_id), pg_catalog.array_agg(t.metric),
		   pg_catalog.array_agg(t.usage_day), pg_catalog.array_agg(t.usage_pending::pg_catalog.numeric)
	  INTO counters, user_ids, metrics, days, quantities FROM taken t;
	PERFORM billing._usage_daily_add(user_ids, metrics, days, quantities);
	RETURN records OPERATOR(pg_catalog.+) counters;
END
$$;
COMMENT ON FUNCTION billing.rollup_usage(timestamptz) IS
	'Adds usage that arrived since the last rollup to the daily totals; run_maintenance calls it';

-- Internal: the partition of billing.usage_records for the UTC month holding
-- `month_of` (named usage_records_YYYY_MM), created when missing; the month's
-- records that waited in usage_records_default move into it. Returns whether
-- it created one. The default partition stays locked from the move to the
-- attach, so no record of the month can slip in between.
CREATE FUNCTION billing._usage_partition(month_of timestamptz) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	month_start timestamp := pg_catalog.date_trunc('month', billing._valid_time(month_of, 'month_of') AT TIME ZONE 'UTC');
	part text := 'usage_records_' OPERATOR(pg_catalog.||) pg_catalog.to_char(month_start, 'YYYY_MM');
	bound_from text := pg_catalog.to_char(month_start, 'YYYY-MM-DD') OPERATOR(pg_catalog.||) ' 00:00:00+00';
	bound_to text := pg_catalog.to_char(month_start OPERATOR(pg_catalog.+) interval '1 month', 'YYYY-MM-DD') OPERATOR(pg_catalog.||) ' 00:00:00+00';
BEGIN
	IF pg_catalog.to_regclass(pg_catalog.format('billing.%I', part)) IS NOT NULL THEN
		RETURN false;
	END IF;
	-- The attach needs these locks (billing.subscriptions: it adds the foreign
	-- key's triggers there); NOWAIT, so that this never queues inserts or
	-- lifecycle writes behind it, nor waits for a concurrent transaction: if
	-- one holds them, the next maintenance run tries again (until then the
	-- month's records wait in the default partition).
	BEGIN
		LOCK TABLE billing.usage_records IN SHARE UPDATE EXCLUSIVE MODE NOWAIT;
		LOCK TABLE billing.usage_records_default IN ACCESS EXCLUSIVE MODE NOWAIT;
		LOCK TABLE billing.subscriptions IN SHARE ROW EXCLUSIVE MODE NOWAIT;
	EXCEPTION WHEN lock_not_available THEN
		RETURN false;
	END;
	IF pg_catalog.to_regclass(pg_catalog.format('billing.%I', part)) IS NOT NULL THEN
		RETURN false;
	END IF;
	EXECUTE pg_catalog.format('CREATE TABLE billing.%I (LIKE billing.usage_records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
							  part);
	EXECUTE pg_catalog.format(
		'WITH moved AS (DELETE FROM ONLY billing.usage_records_default d'
		' WHERE d.recorded_at >= $1::pg_catalog.timestamptz AND d.recorded_at < $2::pg_catalog.timestamptz RETURNING d.*)'
		' INSERT INTO billing.%I SELECT * FROM moved', part) USING bound_from, bound_to;
	EXECUTE pg_catalog.format('CREATE UNIQUE INDEX %I ON billing.%I (id)', part OPERATOR(pg_catalog.||) '_id', part);
	EXECUTE pg_catalog.format('CREATE INDEX %I ON billing.%I (user_id, metric, recorded_at)', part OPERATOR(pg_catalog.||) '_user_metric', part);
	EXECUTE pg_catalog.format('ALTER TABLE billing.usage_records ATTACH PARTITION billing.%I FOR VALUES FROM (%L) TO (%L)',
							  part, bound_from, bound_to);
	RETURN true;
END
$$;

-- Internal: the partition of billing.usage_daily for the UTC month holding
-- `month_of` (named usage_daily_YYYY_MM, with its primary key and (day,
-- metric) index), created when missing; the month's totals that waited in
-- usage_daily_default move into it. Returns whether it created one. Locks as
-- billing._usage_partition does (NOWAIT: the next maintenance run tries again).
-- The partition belongs to the owner of billing.usage_daily, as the default does.
CREATE FUNCTION billing._usage_daily_partition(month_of timestamptz) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	month_start timestamp := pg_catalog.date_trunc('month', billing._valid_time(month_of, 'month_of') AT TIME ZONE 'UTC');
	part text := 'usage_daily_' OPERATOR(pg_catalog.||) pg_catalog.to_char(month_start, 'YYYY_MM');
	bound_from text := pg_catalog.to_char(month_start, 'YYYY-MM-DD');
	bound_to text := pg_catalog.to_char(month_start OPERATOR(pg_catalog.+) interval '1 month', 'YYYY-MM-DD');
BEGIN
	IF pg_catalog.to_regclass(pg_catalog.format('billing.%I', part)) IS NOT NULL THEN
		RETURN false;
	END IF;
	BEGIN
		LOCK TABLE billing.usage_daily IN SHARE UPDATE EXCLUSIVE MODE NOWAIT;
		LOCK TABLE billing.usage_daily_default IN ACCESS EXCLUSIVE MODE NOWAIT;
	EXCEPTION WHEN lock_not_available THEN
		RETURN false;
	END;
	IF pg_catalog.to_regclass(pg_catalog.format('billing.%I', part)) IS NOT NULL THEN
		RETURN false;
	END IF;
	EXECUTE pg_catalog.format('CREATE TABLE billing.%I (LIKE billing.usage_daily INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
							  part);
	-- it belongs to the totals' owner whoever made it (retention drops it)
	EXECUTE pg_catalog.format('ALTER TABLE billing.%I OWNER TO %I', part,
							  (SELECT r.rolname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
								WHERE c.oid OPERATOR(pg_catalog.=) 'billing.usage_daily'::pg_catalog.regclass));
	EXECUTE pg_catalog.format(
		'WITH moved AS (DELETE FROM ONLY billing.usage_daily_default d'
		' WHERE d.day OPERATOR(pg_catalog.>=) $1::pg_catalog.date AND d.day OPERATOR(pg_catalog.<) $2::pg_catalog.date RETURNING d.*)'
		' INSERT INTO billing.%I SELECT * FROM moved', part) USING bound_from, bound_to;
	EXECUTE pg_catalog.format('ALTER TABLE billing.%I ADD CONSTRAINT %I PRIMARY KEY (user_id, metric, day)',
							  part, part OPERATOR(pg_catalog.||) '_pkey');
	EXECUTE pg_catalog.format('CREATE INDEX %I ON billing.%I (day, metric)', part OPERATOR(pg_catalog.||) '_day', part);
	EXECUTE pg_catalog.format('ALTER TABLE billing.usage_daily ATTACH PARTITION billing.%I FOR VALUES FROM (%L) TO (%L)',
							  part, bound_from, bound_to);
	RETURN true;
END
$$;

-- Internal, run by run_maintenance: partitions of the records and of the
-- daily totals for the month of `at` and the two after it (the totals are
-- kept whatever the retention); with the setting usage_record_retention (default: keep),
-- records older than `at` minus it are dropped once rolled up, a month's
-- partition at a time (and those waiting in the default partition).
CREATE FUNCTION billing._usage_partitions(at timestamptz) RETURNS TABLE (action text, count bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	created bigint := 0;
	created_daily bigint := 0;
	dropped bigint := 0;
	retention interval := billing._setting('usage_record_retention')::interval;
	cutoff timestamptz;
	-- the first UTC day from which on no record was dropped (usage() refuses
	-- a partial day before it: billing._usage_span)
	kept_from date;
	last_gone timestamptz;
	r record;
BEGIN
	PERFORM billing._required(at, 'at');
	IF NOT (at OPERATOR(pg_catalog.>=) '0001-01-01 00:00:00+00' AND at OPERATOR(pg_catalog.<) '9999-10-01 00:00:00+00') THEN
		RETURN;  -- no month of records to prepare (or to drop) that far away
	END IF;
	FOR i IN 0..2 LOOP
		IF billing._usage_partition(((at AT TIME ZONE 'UTC') OPERATOR(pg_catalog.+) pg_catalog.make_interval(months => i)) AT TIME ZONE 'UTC') THEN
			created := created OPERATOR(pg_catalog.+) 1;
		END IF;
		IF billing._usage_daily_partition(((at AT TIME ZONE 'UTC') OPERATOR(pg_catalog.+) pg_catalog.make_interval(months => i)) AT TIME ZONE 'UTC') THEN
			created_daily := created_daily OPERATOR(pg_catalog.+) 1;
		END IF;
	END LOOP;
	IF retention IS NOT NULL THEN
		-- dropping a partition locks out every reader and writer of the
		-- records until commit: only when nobody holds a lock on them now
		BEGIN
			LOCK TABLE billing.usage_records IN ACCESS EXCLUSIVE MODE NOWAIT;
			LOCK TABLE billing.subscriptions IN SHARE ROW EXCLUSIVE MODE NOWAIT;
		EXCEPTION WHEN lock_not_available THEN
			retention := NULL;  -- the next run drops them
		END;
	END IF;
	IF retention IS NOT NULL THEN
		cutoff := at OPERATOR(pg_catalog.-) retention;
		-- whole months before the cut-off, none of their records still pending
		FOR r IN
			SELECT c.relname, m.month_start AT TIME ZONE 'UTC' AS lo,
				   (m.month_start OPERATOR(pg_catalog.+) interval '1 month') AT TIME ZONE 'UTC' AS hi
			  FROM pg_catalog.pg_inherits i
			  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid,
				   LATERAL (SELECT pg_catalog.to_date(pg_catalog.substr(c.relname, 15), 'YYYY_MM')::timestamp
									 AS month_start) m
			 WHERE i.inhparent OPERATOR(pg_catalog.=) 'billing.usage_records'::pg_catalog.regclass
			   AND c.relname OPERATOR(pg_catalog.~) '^usage_records_[0-9]{4}_[0-9]{2}$'
			 ORDER BY 2
		LOOP
			CONTINUE WHEN r.hi OPERATOR(pg_catalog.>) cutoff;
			CONTINUE WHEN EXISTS (SELECT FROM billing.usage_pending p WHERE p.recorded_at OPERATOR(pg_catalog.>=) r.lo AND p.recorded_at OPERATOR(pg_catalog.<) r.hi);
			DELETE FROM billing.usage_keys k WHERE k.recorded_at OPERATOR(pg_catalog.>=) r.lo AND k.recorded_at OPERATOR(pg_catalog.<) r.hi;
			EXECUTE pg_catalog.format('DROP TABLE billing.%I', r.relname);
			dropped := dropped OPERATOR(pg_catalog.+) 1;
			kept_from := GREATEST(kept_from, (r.hi AT TIME ZONE 'UTC')::pg_catalog.date);
		END LOOP;
		-- records of months without a partition: one by one
		WITH gone AS (
			DELETE FROM ONLY billing.usage_records_default d
			 WHERE d.recorded_at OPERATOR(pg_catalog.<) cutoff AND NOT EXISTS (SELECT FROM billing.usage_pending p WHERE p.record_id OPERATOR(pg_catalog.=) d.id)
			RETURNING d.id, d.recorded_at),
		keys AS (
			DELETE FROM billing.usage_keys k USING gone g WHERE k.record_id OPERATOR(pg_catalog.=) g.id)
		SELECT pg_catalog.max(g.recorded_at) INTO last_gone FROM gone g;
		kept_from := GREATEST(kept_from, (last_gone AT TIME ZONE 'UTC')::pg_catalog.date OPERATOR(pg_catalog.+) 1);
		IF kept_from IS NOT NULL THEN
			-- kept as an ISO date (YYYY-MM-DD, whatever the DateStyle), never moved back
			INSERT INTO billing.settings AS s (key, value)
			VALUES ('_usage_records_dropped_before', pg_catalog.to_char(kept_from, 'YYYY-MM-DD'))
			ON CONFLICT ON CONSTRAINT settings_pkey DO UPDATE
			   SET value = pg_catalog.to_char(GREATEST(s.value::pg_catalog.date, EXCLUDED.value::pg_catalog.date), 'YYYY-MM-DD'),
				   deleted_at = NULL
			 WHERE s.value::pg_catalog.date OPERATOR(pg_catalog.<) EXCLUDED.value::pg_catalog.date OR s.deleted_at IS NOT NULL;
		END IF;
	END IF;
	IF created OPERATOR(pg_catalog.>) 0 THEN
		action := 'usage_partitions_created';
		count := created;
		RETURN NEXT;
	END IF;
	IF created_daily OPERATOR(pg_catalog.>) 0 THEN
		action := 'usage_daily_partitions_created';
		count := created_daily;
		RETURN NEXT;
	END IF;
	IF dropped OPERATOR(pg_catalog.>) 0 THEN
		action := 'usage_partitions_dropped';
		count := dropped;
		RETURN NEXT;
	END IF;
END
$$;

-- Internal: the core's split of [from, to) into whole UTC days and the
-- partial days at its edges (src/core/usage.hpp, SplitUsageSpan), refused
-- (22023) when a partial day cannot be answered exactly: a metric the quota
-- triggers count per day only, or a day whose records retention dropped
-- (the setting _usage_records_dropped_before that billing._usage_partitions
-- keeps). NULL head/tail: no partial day there.
CREATE FUNCTION billing._usage_span(from_time timestamptz, to_time timestamptz, metric text,
									OUT whole_from timestamptz, OUT whole_to timestamptz,
									OUT head_from timestamptz, OUT head_to timestamptz,
									OUT tail_from timestamptz, OUT tail_to timestamptz)
LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'billing_usage_span';

-- Internal: the usage records of the partial days of a usage() period (the
-- head [head_from, head_to) and the tail [tail_from, tail_to), either NULL
-- when there is none), as they are now: a soft-deleted record is not
-- counted. Each an index range on the (user_id, metric, recorded_at) index
-- of the day's partition. PL/pgSQL, so that usage() of whole days does not
-- plan these statements at all, and the session keeps their plans.
CREATE FUNCTION billing._usage_partial_days(user_id text, metric text, head_from timestamptz, head_to timestamptz,
											 tail_from timestamptz, tail_to timestamptz)
RETURNS numeric
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	head numeric;
	tail numeric;
BEGIN
	IF head_from IS NOT NULL THEN
		SELECT pg_catalog.sum(r.quantity) INTO head FROM billing.usage_records r
		 WHERE r.user_id OPERATOR(pg_catalog.=) $1 AND r.metric OPERATOR(pg_catalog.=) $2
		   AND r.recorded_at OPERATOR(pg_catalog.>=) $3 AND r.recorded_at OPERATOR(pg_catalog.<) $4 AND r.deleted_at IS NULL;
	END IF;
	IF tail_from IS NOT NULL THEN
		SELECT pg_catalog.sum(r.quantity) INTO tail FROM billing.usage_records r
		 WHERE r.user_id OPERATOR(pg_catalog.=) $1 AND r.metric OPERATOR(pg_catalog.=) $2
		   AND r.recorded_at OPERATOR(pg_catalog.>=) $5 AND r.recorded_at OPERATOR(pg_catalog.<) $6 AND r.deleted_at IS NULL;
	END IF;
	RETURN COALESCE(head, 0) OPERATOR(pg_catalog.+) COALESCE(tail, 0);
END
$$;

-- Exact usage over [from, to), any bounds (SPEC §4). The whole UTC days
-- inside it (the core decides which: billing._usage_span) from the rolled-up
-- days, the records not rolled up yet and the quota triggers' counts; a
-- partial day at either edge from the usage records of that day
-- (billing._usage_partial_days). Every part is an index range (no cast of a
-- column).
CREATE FUNCTION billing.usage(user_id text, metric text, from_time timestamptz, to_time timestamptz)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT billing._required($1, 'user_id'), billing._required($2, 'metric'),
		   billing._valid_period($3, $4);
	WITH span AS (SELECT s.whole_from, s.whole_to, s.head_from, s.head_to, s.tail_from, s.tail_to,
						 (s.whole_from AT TIME ZONE 'UTC')::pg_catalog.date AS d0,
						 (s.whole_to AT TIME ZONE 'UTC')::pg_catalog.date AS d1
					FROM billing._usage_span($3, $4, $2) s)
	SELECT LEAST(COALESCE((SELECT pg_catalog.sum(d.quantity) FROM billing.usage_daily d, span
					   WHERE d.user_id OPERATOR(pg_catalog.=) $1 AND d.metric OPERATOR(pg_catalog.=) $2 AND d.day OPERATOR(pg_catalog.>=) span.d0 AND d.day OPERATOR(pg_catalog.<) span.d1
						 AND d.deleted_at IS NULL), 0)
		  OPERATOR(pg_catalog.+) COALESCE((SELECT pg_catalog.sum(p.quantity) FROM billing.usage_pending p, span
					   WHERE p.user_id OPERATOR(pg_catalog.=) $1 AND p.metric OPERATOR(pg_catalog.=) $2
						 AND p.recorded_at OPERATOR(pg_catalog.>=) span.whole_from
						 AND p.recorded_at OPERATOR(pg_catalog.<) span.whole_to), 0)
		  OPERATOR(pg_catalog.+) COALESCE((SELECT pg_catalog.sum(q.usage_pending)
						FROM billing.quota_counters q JOIN billing.attachments a ON a.id OPERATOR(pg_catalog.=) q.attachment_id, span
					   WHERE q.owner_id OPERATOR(pg_catalog.=) $1 AND q.usage_pending OPERATOR(pg_catalog.>) 0
						 AND CASE a.kind WHEN 'rooms' THEN 'rooms_created' ELSE 'participants_joined' END OPERATOR(pg_catalog.=) $2
						 AND q.usage_day OPERATOR(pg_catalog.>=) span.d0 AND q.usage_day OPERATOR(pg_catalog.<) span.d1), 0)
		  -- the partial days, from the records (only when there is one)
		  OPERATOR(pg_catalog.+) (SELECT CASE WHEN span.head_from IS NULL AND span.tail_from IS NULL THEN 0
			  ELSE billing._usage_partial_days($1, $2, span.head_from, span.head_to, span.tail_from, span.tail_to) END
			  FROM span),
				 9223372036854775807)::pg_catalog.int8
$$;
COMMENT ON FUNCTION billing.usage(text, text, timestamptz, timestamptz) IS
	'Exact usage of a metric over [from, to): whole UTC days from the rollups plus the tail, partial days from the records';
