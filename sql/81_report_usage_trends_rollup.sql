-- Review of the reports and history (session 9, hostile tester), finding R2.
-- usage_trends of a past period changes when maintenance rolls the usage up:
-- a pending record counts at its own time (hour buckets, and a period that
-- starts within a day), a rolled-up day at its UTC midnight. After the daily
-- run_maintenance, the hourly series of the day moves everything to 00:00,
-- and a period from noon loses the afternoon's usage. SPEC §8: "every report
-- for a time t uses the state as of t, so a report of a past date never
-- changes afterwards"; README: "usage_trends counts what usage() counts"
-- (usage() itself is unchanged). Grafana's hourly usage panel ($__interval
-- mapped onto hour) shows it.
-- SAFE outcome (this expected file): no row differs before and after.
-- Fix (session 9, decided): usage is kept per UTC day, so usage_trends counts
-- whole UTC days as usage() does (a period from noon counts the whole day,
-- 12), each at its UTC midnight whether rolled up or not, and refuses the
-- hour grain (22023) instead of an hourly series that the rollup would
-- redraw at 00:00.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY terse
SELECT (billing.record_usage('ur1', 'api_calls', 7, '2026-03-10 02:10+00')).quantity;
SELECT (billing.record_usage('ur1', 'api_calls', 5, '2026-03-10 15:30+00')).quantity;
CREATE TEMP TABLE before AS
SELECT 'daily' AS report, * FROM billing.usage_trends('2026-03-09', '2026-03-12', 'day')
UNION ALL
SELECT 'weekly', * FROM billing.usage_trends('2026-03-09', '2026-03-16', 'week')
UNION ALL
SELECT 'daily from noon', * FROM billing.usage_trends('2026-03-10 12:00', '2026-03-11', 'day');
SELECT * FROM before ORDER BY 1, 2;
-- no hour grain: there is no hourly total to keep after the rollup
SELECT * FROM billing.usage_trends('2026-03-10', '2026-03-11', 'hour');
\echo :LAST_ERROR_SQLSTATE
SELECT billing.usage('ur1', 'api_calls', '2026-03-10', '2026-03-11');
-- the next day's maintenance (it rolls the usage up)
SELECT action, count FROM billing.run_maintenance('2026-03-11 00:05') WHERE action = 'usage_rolled_up';
CREATE TEMP TABLE after AS
SELECT 'daily' AS report, * FROM billing.usage_trends('2026-03-09', '2026-03-12', 'day')
UNION ALL
SELECT 'weekly', * FROM billing.usage_trends('2026-03-09', '2026-03-16', 'week')
UNION ALL
SELECT 'daily from noon', * FROM billing.usage_trends('2026-03-10 12:00', '2026-03-11', 'day');
-- rows that changed
(SELECT 'only before' AS side, * FROM before EXCEPT SELECT 'only before', * FROM after)
UNION ALL
(SELECT 'only after', * FROM after EXCEPT SELECT 'only after', * FROM before)
ORDER BY 1, 2, 3;
SELECT billing.usage('ur1', 'api_calls', '2026-03-10', '2026-03-11');
