-- The guard at every entry point: C++ exceptions thrown deep in the code arrive
-- as ordinary errors with their SQLSTATE, and the session stays usable.
CREATE FUNCTION pg_temp.guard_selftest(kind text) RETURNS bigint
	LANGUAGE c STRICT AS 'billing', 'billing_guard_selftest';
SELECT pg_temp.guard_selftest('billing_error');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.guard_selftest('std_exception');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.guard_selftest('unknown');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.guard_selftest('bad_alloc');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.guard_selftest('pg_error');
\echo :LAST_ERROR_SQLSTATE
-- an error text longer than the guard keeps (1023 bytes) is cut between
-- characters, so a client in another encoding still gets it (a cut UTF-8
-- sequence could not be converted: 22021 instead of the error)
SET client_encoding = 'LATIN1';
\set VERBOSITY sqlstate
SELECT pg_temp.guard_selftest('billing_error' || repeat(chr(233), 600));
\set VERBOSITY default
RESET client_encoding;
DO $$
BEGIN
	PERFORM pg_temp.guard_selftest('billing_error' || repeat(chr(233), 600));
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE '% bytes, ends with %', octet_length(SQLERRM), right(SQLERRM, 1);
END
$$;
-- a C++ exception that passes through PgCall (a bug in the callable) leaves
-- PostgreSQL's error stack as it was: the next error in the same statement is
-- an ordinary error
SELECT pg_temp.guard_selftest('cpp_in_pgcall') / 0;
\echo :LAST_ERROR_SQLSTATE
-- a set-returning function declared with other columns than the rows its C++
-- code builds is an internal error, never a cut-off or a garbage row
CREATE FUNCTION pg_temp.transitions_too_few() RETURNS TABLE (from_status text, action text)
	LANGUAGE c AS 'billing', 'billing_transitions';
CREATE FUNCTION pg_temp.transitions_too_many() RETURNS TABLE (a text, b text, c text, d text, e text)
	LANGUAGE c AS 'billing', 'billing_transitions';
SELECT * FROM pg_temp.transitions_too_few();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pg_temp.transitions_too_many();
\echo :LAST_ERROR_SQLSTATE
-- an Spi connection left unfinished on the success path (a bug) is reported,
-- and PostgreSQL cleans it up at commit
SELECT pg_temp.guard_selftest('spi_unfinished');
-- the session is still healthy and the function still works
SELECT pg_temp.guard_selftest('none');
-- a caught error inside a PL/pgSQL block does not disturb the transaction
DO $$
BEGIN
	PERFORM pg_temp.guard_selftest('billing_error');
EXCEPTION WHEN sqlstate 'QB010' THEN
	RAISE NOTICE 'caught QB010: %', SQLERRM;
END
$$;
-- many errors do not grow the backend: each call holds a 1 MiB std::string
-- when it fails, and a skipped destructor would leak it (200 MiB in all)
CREATE FUNCTION pg_temp.rss_kb() RETURNS bigint LANGUAGE sql AS $$
	SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmRSS:\s+(\d+)'))[1]::bigint
$$;
SELECT pg_temp.rss_kb() AS rss_before \gset
DO $$
DECLARE
	i int;
BEGIN
	FOR i IN 1..200 LOOP
		BEGIN
			PERFORM pg_temp.guard_selftest(CASE i % 3 WHEN 0 THEN 'billing_error' WHEN 1 THEN 'pg_error' ELSE 'std_exception' END);
		EXCEPTION WHEN OTHERS THEN
			NULL;
		END;
	END LOOP;
END
$$;
SELECT pg_temp.rss_kb() - :rss_before < 50 * 1024 AS backend_did_not_grow;
SELECT 1 AS still_alive;
