-- README walk (session 9, independent tester), finding W2.
-- SPEC §4: billing.usage(user_id, metric, from, to) "answers from the rollups
-- plus the not-yet-rolled-up tail, so it is always exact". The README
-- (Usage) chose whole UTC days instead: from `from`'s day (inclusive) to
-- `to`'s day (exclusive), whatever the times. So a period inside one day
-- answers 0 although a record lies inside it, and a period starting after a
-- record on the same day counts it. Nothing is refused: a caller metering
-- by the hour gets silently wrong totals.
-- SAFE outcome (this expected file): the records in [from, to) (3, 0, 3), as
-- the SPEC states; a bound that is not a UTC midnight refused with 22023
-- would also be safe (then this file changes).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
\set VERBOSITY sqlstate
SELECT quantity FROM billing.record_usage('ud1', 'api_calls', 3, '2026-01-05 10:00');
-- a record at 10:00 lies inside [01:00, 23:00) of the same day
SELECT billing.usage('ud1', 'api_calls', '2026-01-05 01:00', '2026-01-05 23:00') AS within_the_day;
-- and not inside [11:00, next midnight)
SELECT billing.usage('ud1', 'api_calls', '2026-01-05 11:00', '2026-01-06 00:00') AS after_the_record;
-- whole days agree either way
SELECT billing.usage('ud1', 'api_calls', '2026-01-05', '2026-01-06') AS the_whole_day;
