-- The hostile-input gate's machinery (see hostile_input.sh), created as the
-- superuser in a database of its own: the calls to make, a checksum of every
-- billing table, and the judge that checks each call's outcome.
CREATE SCHEMA gate;
-- expect: the SQLSTATE the README promises for this value (NULL for a required
-- argument: 22004; a time outside the years 0001-9999: 22008), else NULL.
CREATE TABLE gate.calls (n int PRIMARY KEY, fn regprocedure, arg text, label text, sql text, expect text);
CREATE TABLE gate.allowed_sqlstates (sqlstate text PRIMARY KEY);
-- Arguments for which the README documents another answer to NULL than
-- 22004 (function, argument, the SQLSTATE or 00000 for a result, where).
CREATE TABLE gate.documented_null (fn regprocedure, arg text, sqlstate text, readme text);
CREATE TABLE gate.results (n int PRIMARY KEY, sqlstate text, verdict text);
-- keep_going (HOSTILE_ALL=1): judge every call instead of stopping at the first violation
CREATE TABLE gate.state (checksum text, keep_going boolean NOT NULL DEFAULT false, healthy boolean NOT NULL DEFAULT true);

-- md5 over every row of every billing table.
CREATE FUNCTION gate.checksum() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t regclass;
	h text;
	acc text := '';
BEGIN
	FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'p')
			 ORDER BY c.relname LOOP
		EXECUTE format('SELECT md5(COALESCE(string_agg(md5(x::text), '''' ORDER BY md5(x::text)), '''')) FROM %s x', t)
			INTO h;
		acc := acc || h;
	END LOOP;
	RETURN md5(acc);
END $$;

-- Judges call n, which ended with SQLSTATE state ('00000': success). Returns
-- stop = true, and the verdict, on the first violation that is not known.
CREATE FUNCTION gate.judge(n int, state text, OUT stop boolean, OUT verdict text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c gate.calls;
	now_sum text := gate.checksum();
	before_sum text := (SELECT s.checksum FROM gate.state s);
	-- the function refuses this role with valid arguments too (42501 before
	-- looking at them, as PostgreSQL's own privilege checks do)
	refused boolean;
BEGIN
	SELECT * INTO c FROM gate.calls WHERE calls.n = judge.n;
	-- (an assignment: SELECT INTO would set expect to NULL when no row is found)
	c.expect := COALESCE((SELECT d.sqlstate FROM gate.documented_null d
						   WHERE c.label = 'NULL' AND d.fn = c.fn AND d.arg = c.arg), c.expect);
	refused := EXISTS (SELECT FROM gate.calls b JOIN gate.results r USING (n)
						WHERE b.fn = c.fn AND b.label = 'baseline' AND r.sqlstate = '42501');
	verdict := CASE
		WHEN state NOT IN (SELECT a.sqlstate FROM gate.allowed_sqlstates a)
			THEN format('SQLSTATE %s is not in the README''s error table', state)
		WHEN c.expect IS NOT NULL AND state <> c.expect AND NOT (refused AND state = '42501')
			THEN format('answered %s with %s (the README promises %s)', c.label,
						CASE state WHEN '00000' THEN 'success' ELSE 'SQLSTATE ' || state END,
						CASE c.expect WHEN '00000' THEN 'a result' ELSE 'SQLSTATE ' || c.expect END)
		WHEN state <> '00000' AND now_sum IS DISTINCT FROM before_sum
			THEN format('the call failed (%s) but changed billing''s tables', state) END;
	-- a call that succeeded must not leave billing broken for everyone: the
	-- reports over the test's months still run
	IF verdict IS NULL AND state = '00000' THEN
		BEGIN
			PERFORM FROM billing.arpu('2026-01-01', '2027-01-01');
			PERFORM FROM billing.mrr('2026-06-15');
			PERFORM FROM billing.revenue('2026-06-01', '2026-07-01', 'month');
			UPDATE gate.state SET healthy = true;
		EXCEPTION WHEN OTHERS THEN
			IF (SELECT s.healthy FROM gate.state s) THEN
				verdict := format('succeeded, and now the reports fail for everyone: %s %s', SQLSTATE, SQLERRM);
			END IF;
			UPDATE gate.state SET healthy = false;
		END;
	END IF;
	UPDATE gate.state SET checksum = now_sum;
	INSERT INTO gate.results VALUES (n, state, COALESCE(verdict, 'ok'));
	IF verdict IS NOT NULL AND (SELECT s.keep_going FROM gate.state s) THEN
		RAISE WARNING 'VIOLATION: call %: %  -- % = %: %', n, left(c.sql, 300), c.arg, c.label, verdict;
		verdict := NULL;
	END IF;
	stop := verdict IS NOT NULL;
	IF stop THEN
		verdict := format('VIOLATION: call %s: %s%s  -- %s = %s: %s', n, left(c.sql, 400),
						  CASE WHEN length(c.sql) > 400 THEN '...' ELSE '' END, c.arg, c.label, verdict);
	END IF;
END $$;

-- A type's name as the calls write it: qualified, because the shadowing
-- gate's caller has planted types named text, jsonb, ... first in its path.
CREATE FUNCTION gate.type_name(t regtype) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN ty.typnamespace = 'pg_catalog'::regnamespace THEN 'pg_catalog.' || quote_ident(ty.typname)
				ELSE format_type(ty.oid, NULL) END
	  FROM pg_type ty WHERE ty.oid = t
$$;

-- The values each argument type gets in turn.
CREATE TABLE gate.hostile_values (type regtype, label text, expr text);
INSERT INTO gate.hostile_values VALUES
	('text', 'NULL', 'NULL'), ('text', 'empty', ''''''),
	('text', '1 MB', 'pg_catalog.repeat(''x'', 1048576)'),
	('text', '1 MB, 2-byte chars', 'pg_catalog.repeat(pg_catalog.chr(233), 524288)'),
	('text', 'malformed JSON', '''{"id": "evt_1", "type":'''),
	('name', 'NULL', 'NULL'), ('name', 'empty', ''''''), ('name', 'system column', '''xmin'''),
	('name', 'no such column', '''no_such_column'''),
	('bigint', 'NULL', 'NULL'), ('bigint', '0', '0'), ('bigint', '-1', '-1'),
	('bigint', 'bigint max', '9223372036854775807'), ('bigint', 'bigint min', '(-9223372036854775807 OPERATOR(pg_catalog.-) 1)'),
	('integer', 'NULL', 'NULL'), ('integer', '0', '0'), ('integer', '-1', '-1'),
	('integer', 'int max', '2147483647'), ('integer', 'int min', '(-2147483647 OPERATOR(pg_catalog.-) 1)'),
	('boolean', 'NULL', 'NULL'),
	('timestamptz', 'NULL', 'NULL'), ('timestamptz', 'infinity', '''infinity'''),
	('timestamptz', '-infinity', '''-infinity'''), ('timestamptz', 'year 294276', '''294276-12-31 23:59:59+00'''),
	('date', 'NULL', 'NULL'), ('date', 'infinity', '''infinity'''), ('date', '-infinity', '''-infinity'''),
	('date', 'year 5874897', '''5874897-12-31'''),
	('interval', 'NULL', 'NULL'), ('interval', 'negative', '''-1 day'''), ('interval', 'huge', '''178000000 years'''),
	('jsonb', 'NULL', 'NULL'), ('jsonb', 'JSON null', '''null'''), ('jsonb', 'array', '''[]'''),
	('text[]', 'NULL', 'NULL'), ('text[]', 'NULL element', '''{NULL}'''), ('bigint[]', 'NULL', 'NULL'),
	('bigint[]', 'NULL element', '''{NULL}'''), ('name[]', 'NULL', 'NULL'),
	('regclass', 'NULL', 'NULL'), ('regclass', 'pg_class', '''pg_catalog.pg_class'''),
	('regclass', 'pg_authid', '''pg_catalog.pg_authid'''), ('regclass', 'billing.payments', '''billing.payments'''),
	('regclass', 'billing.quota_counters', '''billing.quota_counters'''), ('regclass', 'invalid oid 0', '0');

-- A valid value for each argument, by name (then by type), so that the
-- hostile one is what the function meets.
CREATE TABLE gate.baseline (name text, type regtype, expr text);

-- Every function and procedure a billing role may execute, each argument
-- in turn given each hostile value of its type, the others their baseline.
CREATE FUNCTION gate.generate() RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	f record;
	i int;
	v record;
	n int := 0;
	args text[];
	names text[];
	types regtype[];
	defaults text[];
BEGIN
	FOR f IN
		SELECT p.oid, p.prokind, p.proargnames, p.proallargtypes, p.proargmodes, p.proargtypes
		  FROM pg_proc p
		 WHERE p.pronamespace = 'billing'::regnamespace
		   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
		   -- polymorphic (billing._required): no value has its type; its callers are called
		   AND NOT EXISTS (SELECT FROM unnest(p.proargtypes::oid[]) a(t) JOIN pg_type ty ON ty.oid = a.t WHERE ty.typtype = 'p')
		   AND (has_function_privilege('billing_app', p.oid, 'EXECUTE')
				OR has_function_privilege('billing_analyst', p.oid, 'EXECUTE')
				OR has_function_privilege('billing_admin', p.oid, 'EXECUTE'))
		 ORDER BY p.proname, p.oid
	LOOP
		-- input arguments only
		SELECT array_agg(a.name ORDER BY a.ord), array_agg(a.type ORDER BY a.ord),
			   array_agg(COALESCE(pg_get_function_arg_default(f.oid, a.ord::int), '') ORDER BY a.ord)
		  INTO names, types, defaults
		  FROM (SELECT t.ord, COALESCE(f.proargnames[t.ord], '') AS name, t.type::regtype AS type,
					   COALESCE(f.proargmodes[t.ord], 'i') AS mode
				  FROM unnest(COALESCE(f.proallargtypes, f.proargtypes::oid[])) WITH ORDINALITY t(type, ord)) a
		 WHERE a.mode IN ('i', 'b', 'v');
		args := ARRAY(SELECT COALESCE(
						(SELECT b.expr FROM gate.baseline b WHERE b.name = names[k] AND b.type = types[k]),
						(SELECT b.expr FROM gate.baseline b WHERE b.name IS NULL AND b.type = types[k]),
						'NULL') || '::' || gate.type_name(types[k])
					  FROM generate_subscripts(COALESCE(types, '{}'), 1) k ORDER BY k);
		IF types IS NULL THEN
			n := n + 1;
			INSERT INTO gate.calls VALUES (n, f.oid, '', 'no arguments',
				format('%s %s()', CASE f.prokind WHEN 'p' THEN 'CALL' ELSE 'SELECT' END, f.oid::regproc));
			CONTINUE;
		END IF;
		n := n + 1;
		INSERT INTO gate.calls VALUES (n, f.oid, '', 'baseline',
			format('%s %s(%s)', CASE f.prokind WHEN 'p' THEN 'CALL' ELSE 'SELECT' END, f.oid::regproc,
				   array_to_string(args, ', ')));
		FOR i IN 1 .. array_length(types, 1) LOOP
			FOR v IN SELECT h.label, h.expr FROM gate.hostile_values h WHERE h.type = types[i] ORDER BY h.ctid LOOP
				n := n + 1;
				INSERT INTO gate.calls VALUES (n, f.oid, names[i], v.label,
					format('%s %s(%s)', CASE f.prokind WHEN 'p' THEN 'CALL' ELSE 'SELECT' END, f.oid::regproc,
						   array_to_string(ARRAY(SELECT CASE WHEN k = i THEN '(' || v.expr || ')::' || gate.type_name(types[k])
														ELSE args[k] END
												   FROM generate_subscripts(types, 1) k ORDER BY k), ', ')),
					CASE WHEN v.label = 'NULL' AND defaults[i] NOT LIKE 'NULL%' THEN '22004'
						 WHEN types[i] IN ('timestamptz'::regtype, 'date'::regtype) AND v.label <> 'NULL' THEN '22008' END);
			END LOOP;
		END LOOP;
	END LOOP;
	RETURN n;
END $$;
