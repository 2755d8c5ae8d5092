-- Timing helpers for bench/reports/run.sh (kept in pg_temp of the session).
-- ms(sql): milliseconds to run sql to the end (its rows are counted, not sent).
CREATE FUNCTION pg_temp.ms(query text) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	n bigint;
BEGIN
	EXECUTE 'SELECT count(*) FROM (' || query || ') q' INTO n;
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
