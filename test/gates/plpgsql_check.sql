-- plpgsql_check over every PL/pgSQL function in schema billing: trigger
-- functions against every table they are attached to (billing's own and the
-- test application's), event trigger functions as they are, the rest on their
-- own. One row per finding: level, function, table, line, SQLSTATE, message.
CREATE TEMP VIEW gate_targets AS
SELECT p.oid AS fn, t.tgrelid AS rel, t.tgoldtable AS oldtable, t.tgnewtable AS newtable
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
  -- (one function on several triggers of a table, e.g. DELETE with an old and
  -- UPDATE with both transition tables: checked once, with every name)
  LEFT JOIN (SELECT tgfoid, tgrelid, max(tgoldtable) AS tgoldtable, max(tgnewtable) AS tgnewtable
			   FROM pg_catalog.pg_trigger GROUP BY 1, 2) t
		 ON t.tgfoid = p.oid AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
 WHERE p.pronamespace = 'billing'::pg_catalog.regnamespace;

-- A trigger function attached nowhere cannot be checked: that is an error too
-- (attach it in test/gates/app_schema.sql).
SELECT 'error' AS level, g.fn::pg_catalog.regprocedure AS function, NULL::pg_catalog.regclass AS "table",
	   NULL::int AS line, NULL::text AS sqlstate,
	   'trigger function attached to no table, so it cannot be checked' AS message
  FROM gate_targets g
 WHERE g.rel IS NULL AND (SELECT p.prorettype FROM pg_catalog.pg_proc p WHERE p.oid = g.fn) = 'pg_catalog.trigger'::pg_catalog.regtype
UNION ALL
SELECT CASE WHEN c.sqlstate = '42P01' AND (SELECT p.prosrc FROM pg_catalog.pg_proc p WHERE p.oid = g.fn)
					 ~* ('CREATE\s+TEMP(ORARY)?\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?'
						 || pg_catalog.substring(c.message, 'relation "([^"]+)" does not exist'))
			THEN 'warning (a temporary table the function creates itself)' ELSE c.level END,
	   g.fn::pg_catalog.regprocedure, NULLIF(g.rel, 0)::pg_catalog.regclass, c.lineno, c.sqlstate,
	   pg_catalog.regexp_replace(c.message || COALESCE(' (' || c.detail || ')', '')
								 || COALESCE(' query: ' || c.query, ''), '\s+', ' ', 'g')
  FROM gate_targets g,
	   LATERAL public.plpgsql_check_function_tb(g.fn, COALESCE(g.rel, 0), fatal_errors => false,
												  oldtable => g.oldtable, newtable => g.newtable,
												  other_warnings => true, extra_warnings => true,
												  performance_warnings => false, security_warnings => true) c
 WHERE g.rel IS NOT NULL
	OR (SELECT p.prorettype FROM pg_catalog.pg_proc p WHERE p.oid = g.fn) <> 'pg_catalog.trigger'::pg_catalog.regtype
 ORDER BY 1, 2, 3, 4;
