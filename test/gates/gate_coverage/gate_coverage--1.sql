-- Installed by test/run.sh into the pg_regress and isolation databases
-- (--load-extension). Call counts (pg_stat_user_functions, track_functions =
-- 'all') are kept per function OID and vanish when billing is dropped, which
-- the tests do often; this event trigger copies them first, by signature.
CREATE TABLE gate_coverage.calls (function text PRIMARY KEY, calls bigint NOT NULL);

CREATE FUNCTION gate_coverage.snapshot() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO gate_coverage.calls AS c (function, calls)
	SELECT pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes)),
		   -- flushed counts, plus those this backend has not flushed yet
		   COALESCE(pg_catalog.pg_stat_get_function_calls(p.oid), 0)
		   + COALESCE(pg_catalog.pg_stat_get_xact_function_calls(p.oid), 0)
	  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'billing'
	ON CONFLICT (function) DO UPDATE SET calls = pg_catalog.int8larger(c.calls, EXCLUDED.calls)
$$;

CREATE FUNCTION gate_coverage.before_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM gate_coverage.snapshot();
END
$$;

CREATE EVENT TRIGGER gate_coverage_before_drop ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP FUNCTION', 'DROP PROCEDURE', 'DROP OWNED', 'ALTER EXTENSION')
	EXECUTE FUNCTION gate_coverage.before_drop();
