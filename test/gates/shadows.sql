-- Shadowing objects an unprivileged role can plant (test/gates/shadowing.sh),
-- run as that role at the start of the session that then calls every
-- billing function. Each planted object does what the real one does and
-- raises a WARNING "SHADOW RAN: ..." first; the gate fails on any such
-- warning: billing resolved a name through the caller's search_path.
--   public (the role was granted CREATE on it): a function for each
--     operator of pg_catalog on common types, and that operator; functions
--     named like common pg_catalog functions, same argument types.
--   pg_temp: types named like built-in types (text, jsonb, timestamptz, ...)
--     with casts to them; views named like billing's tables and a few
--     catalogs.
-- The session's search_path then puts pg_temp and public before pg_catalog.
SET search_path = pg_catalog, pg_temp;
SET client_min_messages = warning;
-- (planting is not a call under test: no statement_timeout, reset below)
SET statement_timeout = 0;

DO $plant$
DECLARE
	o record;
	n int := 0;
	ty text;
	src regtype;
	common regtype[] := ARRAY['text', 'name', 'bigint', 'integer', 'smallint', 'numeric', 'timestamp with time zone',
							  'date', 'interval', 'jsonb', 'json', 'boolean', 'oid', 'regclass', 'double precision',
							  'character varying', 'bytea']::regtype[];
BEGIN
	-- operators: public.OP(l, r) calls the same code as pg_catalog.OP(l, r)
	IF NOT EXISTS (SELECT FROM pg_proc WHERE proname = 'shadow_op_1' AND pronamespace = 'public'::regnamespace) THEN
		FOR o IN
			SELECT op.oprname, op.oprleft::regtype AS l, op.oprright::regtype AS r, op.oprresult::regtype AS res,
				   format('%I.%I', pn.nspname, p.proname) AS code
			  FROM pg_operator op JOIN pg_proc p ON p.oid = op.oprcode JOIN pg_namespace pn ON pn.oid = p.pronamespace
			 WHERE op.oprnamespace = 'pg_catalog'::regnamespace
			   AND op.oprname IN ('=', '<>', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', '||', '~', '!~', '~~', '!~~',
								  '~~*', '~*', '->>', '->', '#>>', '@>', '<@', '?', '&&')
			   AND op.oprleft = ANY (common::oid[]) AND op.oprright = ANY (common::oid[])
			 ORDER BY 1, 2, 3
		LOOP
			n := n + 1;
			EXECUTE format('CREATE FUNCTION public.shadow_op_%s(a %s, b %s) RETURNS %s LANGUAGE plpgsql AS $f$
				BEGIN RAISE WARNING ''SHADOW RAN: operator public.%s(%s, %s) as %%'', current_user; RETURN %s(a, b); END $f$',
				n, o.l, o.r, o.res, replace(o.oprname, '%', '%%'), o.l, o.r, o.code);
			EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.shadow_op_%s)',
						   o.oprname, o.l, o.r, n);
		END LOOP;
		-- functions: public.f(args) for pg_catalog.f(args), plain argument types only
		FOR o IN
			SELECT p.proname, p.prorettype::regtype AS res, p.proretset,
				   (SELECT string_agg(format('a%s %s', i, t::regtype), ', ' ORDER BY i)
					  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)) AS params,
				   (SELECT string_agg(format('a%s', i), ', ' ORDER BY i)
					  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)) AS args,
				   p.oid::regprocedure AS sig
			  FROM pg_proc p
			 WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f' AND p.provariadic = 0
			   AND p.proname IN ('now', 'lower', 'upper', 'btrim', 'ltrim', 'rtrim', 'length', 'char_length',
								 'octet_length', 'left', 'right', 'substr', 'replace', 'split_part', 'strpos', 'md5',
								 'abs', 'round', 'floor', 'ceil', 'trunc', 'date_trunc', 'date_part', 'to_timestamp',
								 'to_char', 'isfinite', 'age', 'current_setting', 'set_config', 'pg_has_role',
								 'has_table_privilege', 'has_column_privilege', 'has_function_privilege', 'nextval',
								 'hashtext', 'pg_advisory_xact_lock', 'jsonb_typeof', 'jsonb_array_length',
								 'jsonb_extract_path_text', 'jsonb_build_object', 'jsonb_object_keys',
								 'jsonb_array_elements', 'jsonb_array_elements_text', 'jsonb_each_text',
								 'int8larger', 'int8smaller', 'int4larger', 'string_to_array', 'encode', 'decode',
								 'sha256', 'clock_timestamp', 'statement_timestamp', 'transaction_timestamp',
								 'pg_notify', 'quote_ident', 'quote_literal', 'format', 'regexp_replace',
								 'convert_to', 'text', 'int8', 'int4', 'numeric', 'timestamptz', 'date', 'interval',
								 'make_interval', 'justify_interval', 'generate_series', 'to_json', 'row_to_json',
								 'txid_current', 'pg_current_xact_id', 'pg_backend_pid', 'gen_random_uuid',
								 'random', 'timezone', 'overlaps', 'starts_with', 'lpad', 'rpad', 'repeat',
								 'array_length', 'cardinality', 'coalesce', 'nullif', 'greatest', 'least',
								 'pg_get_function_identity_arguments', 'format_type', 'to_regclass', 'pg_typeof',
								 'inet_client_addr', 'current_database', 'version')
			   AND NOT EXISTS (SELECT FROM unnest(p.proargtypes::oid[] || p.prorettype) t(t) JOIN pg_type ty ON ty.oid = t.t
								WHERE ty.typtype = 'p' AND ty.oid <> 'void'::regtype)
			 ORDER BY 1
		LOOP
			EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS $f$
				BEGIN RAISE WARNING ''SHADOW RAN: function public.%s as %%'', current_user; %s; END $f$',
				o.proname, COALESCE(o.params, ''), CASE WHEN o.proretset THEN 'SETOF ' ELSE '' END, o.res,
				replace(o.sig::text, '''', ''''''),
				CASE WHEN o.proretset THEN format('RETURN QUERY SELECT * FROM pg_catalog.%I(%s)', o.proname, COALESCE(o.args, ''))
					 WHEN o.res = 'void'::regtype THEN format('PERFORM pg_catalog.%I(%s); RETURN', o.proname, COALESCE(o.args, ''))
					 ELSE format('RETURN pg_catalog.%I(%s)', o.proname, COALESCE(o.args, '')) END);
		END LOOP;
	END IF;

	-- pg_temp: types named like built-in ones, each with casts from common types
	-- (bigint, integer, numeric, ...: the SQL-standard names billing writes
	-- unqualified, which the grammar itself maps to pg_catalog's types)
	n := 0;
	FOREACH ty IN ARRAY ARRAY['text', 'name', 'jsonb', 'json', 'timestamptz', 'int8', 'int4', 'int2', 'bool',
							  'date', 'oid', 'regclass', 'regprocedure', 'bytea', 'float8', 'varchar',
							  'bigint', 'integer', 'numeric', 'boolean', 'interval', 'timestamp'] LOOP
		EXECUTE format('CREATE TYPE pg_temp.%I AS ENUM (''infinity'', ''0'', '''')', ty);
		FOREACH src IN ARRAY common LOOP
			n := n + 1;
			EXECUTE format('CREATE FUNCTION pg_temp.shadow_cast_%s(v %s) RETURNS pg_temp.%I LANGUAGE plpgsql AS $f$
				BEGIN RAISE WARNING ''SHADOW RAN: cast (%s AS pg_temp.%s) as %%'', current_user; RETURN NULL; END $f$',
				n, src, ty, src, ty);
			EXECUTE format('CREATE CAST (%s AS pg_temp.%I) WITH FUNCTION pg_temp.shadow_cast_%s(%s) AS ASSIGNMENT',
						   src, ty, n, src);
		END LOOP;
	END LOOP;
	-- pg_temp: a view for each billing table and a few catalogs; reading it warns
	CREATE FUNCTION pg_temp.shadow_read(what text) RETURNS boolean LANGUAGE plpgsql AS $f$
		BEGIN RAISE WARNING 'SHADOW RAN: view pg_temp.% as %', what, current_user; RETURN true; END $f$;
	FOR o IN SELECT c.relname, c.oid::regclass AS rel FROM pg_class c
			  WHERE (c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'p', 'v'))
				 OR (c.relnamespace = 'pg_catalog'::regnamespace
					 AND c.relname IN ('pg_class', 'pg_attribute', 'pg_trigger', 'pg_proc', 'pg_namespace',
									   'pg_roles', 'pg_index', 'pg_type', 'pg_settings', 'pg_stat_activity')) LOOP
		EXECUTE format('CREATE TEMP VIEW %I AS SELECT %s FROM (SELECT pg_temp.shadow_read(%L)) s(x) LEFT JOIN %s t ON s.x',
					   o.relname, (SELECT string_agg('t.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
									 FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
									WHERE a.attrelid = o.rel AND a.attnum > 0 AND NOT a.attisdropped AND ty.typtype <> 'p'),
					   o.relname, o.rel);
	END LOOP;
END
$plant$;

-- what an attacker's session does: its own objects first
RESET statement_timeout;
SET search_path = pg_temp, public, pg_catalog;
