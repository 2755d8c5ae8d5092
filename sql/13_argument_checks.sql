-- The entitlement, quota and usage functions refuse what the README's error table promises to
-- refuse: a NULL required argument (22004), a time outside the years 0001 to
-- 9999 (22008). (test/gates/hostile_input.sh tries every function this way.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT call, pg_temp.sqlstate_of('SELECT * FROM billing.' || call) AS error
  FROM (VALUES ($$effective_plan('u', '2026-01-01')$$), ($$effective_plan(NULL, '2026-01-01')$$),
               ($$effective_plan('u', NULL)$$), ($$effective_plan('u', 'infinity')$$),
               ($$effective_plan('u', '-infinity')$$), ($$effective_plan('u', '10000-01-01 00:00+00')$$),
               ($$quota('u', 'rooms', '2026-01-01')$$), ($$quota(NULL, 'rooms', '2026-01-01')$$),
               ($$quota('u', NULL, '2026-01-01')$$), ($$quota('u', 'rooms', 'infinity')$$),
               ($$has_feature('u', 'api', '2026-01-01')$$), ($$has_feature('u', NULL, '2026-01-01')$$),
               ($$has_feature('u', 'api', '-infinity')$$),
               ($$over_quota('2026-01-01')$$), ($$over_quota(NULL)$$), ($$over_quota('infinity')$$),
               ($$usage('u', 'api.calls', '2026-01-01', '2026-02-01')$$), ($$usage(NULL, 'api.calls', '2026-01-01', '2026-02-01')$$),
               ($$usage('u', 'api.calls', '-infinity', '2026-02-01')$$), ($$usage('u', 'api.calls', '2026-01-01', 'infinity')$$)) c(call);
-- a period whose end is not after its start: 22023 for every function taking one
SELECT call, pg_temp.sqlstate_of('SELECT * FROM billing.' || call) AS error
  FROM (VALUES ($$arpu('2031-05-01', '2020-01-01')$$), ($$trial_conversion('2031-05-01', '2020-01-01')$$),
               ($$usage('u', 'api.calls', '2031-05-01', '2020-01-01')$$), ($$usage('u', 'api.calls', '2031-05-01', '2031-05-01')$$),
               ($$churn('2031-05-01', '2020-01-01')$$), ($$revenue('2031-05-01', '2020-01-01')$$),
               ($$arpu('2020-01-01', '2031-05-01')$$)) c(call);
