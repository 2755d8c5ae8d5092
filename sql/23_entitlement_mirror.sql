-- billing._grants_plan is the one SQL mirror of the core's rule (GrantsAt),
-- for set-based reports (plan_distribution through _book_at). Compared with
-- the core itself (billing._grants_plan_core) on every status and every order
-- of trial end, period end and grace end around `at` (NULL, before, at, after).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
WITH t(v) AS (VALUES (NULL::timestamptz), ('2030-06-01 00:00:00+00'::timestamptz - interval '1 microsecond'),
					 ('2030-06-01 00:00:00+00'), ('2030-06-01 00:00:00+00'::timestamptz + interval '1 microsecond')),
grid AS (
	SELECT s.status, tr.v AS trial_end, pe.v AS period_end, ge.v AS grace_end,
		   billing._grants_plan(s.status, tr.v, pe.v, ge.v, '2030-06-01 00:00:00+00') AS mirror,
		   billing._grants_plan_core(s.status::text, tr.v, pe.v, ge.v, '2030-06-01 00:00:00+00') AS core
	  FROM unnest(enum_range(NULL::billing.subscription_status)) s(status), t tr, t pe, t ge)
SELECT status, count(*) AS cases, count(*) FILTER (WHERE core) AS core_grants,
	   count(*) FILTER (WHERE mirror IS DISTINCT FROM core) AS disagree
  FROM grid GROUP BY status ORDER BY status;
-- e.g. canceled: grants only with a period end after `at` (1 of 4) and no
-- grace end at or before it (2 of 4): 4 trial ends x 1 x 2 = 8 of 64
