-- Timing helpers for bench/reports/run.sh (kept in pg_temp of the session).
-- ms(sql): milliseconds to run sql to the end (its rows are counted, not sent).
-- count(q.*), not count(*): the whole row is read, so a query's output columns
-- are computed; under count(*) the planner drops the columns nobody reads (a
-- DBA query's sum() was never computed, while a report function computes
-- every column it returns).
CREATE FUNCTION pg_temp.ms(query text) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	n bigint;
BEGIN
	EXECUTE 'SELECT count(q.*) FROM (' || query || ') q' INTO n;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;
-- ms_scalar(sql): the same for a query of one value, run as it is (a count(*)
-- around an aggregate lets the planner drop the aggregate).
CREATE FUNCTION pg_temp.ms_scalar(query text) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	v text;
BEGIN
	EXECUTE query INTO v;
	RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;
