-- billing.record_usage: a plain call, a repeated idempotency key, each bad input.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
-- a plain call stores one event (no subscription yet: subscription_id is NULL)
SELECT user_id, subscription_id, metric, quantity, recorded_at, idempotency_key, rolled_up
  FROM billing.record_usage('u1', 'api.calls', 5, '2026-03-01 10:00+00');
-- defaults: quantity 1, no key
SELECT quantity, idempotency_key FROM billing.record_usage('u1', 'api.calls', at => '2026-03-01 11:00+00');
-- with a current subscription, the event points at it
SELECT id AS sub FROM billing.subscribe('u2', 'pro_monthly', '2026-03-01 00:00+00', with_trial => false) \gset
SELECT subscription_id = :sub AS linked FROM billing.record_usage('u2', 'api.calls', 1, '2026-03-02 00:00+00');
-- a repeated key returns the first record and stores nothing
SELECT id AS first_id FROM billing.record_usage('u1', 'exports', 2, '2026-03-01 12:00+00', 'key-1') \gset
SELECT id = :first_id AS same_record, quantity, recorded_at
  FROM billing.record_usage('u1', 'exports', 7, '2026-03-05 12:00+00', 'key-1');
SELECT count(*) AS stored FROM billing.usage_records WHERE idempotency_key = 'key-1';
-- the same key for another user is another event
SELECT id <> :first_id AS new_record FROM billing.record_usage('u2', 'exports', 1, '2026-03-01 12:00+00', 'key-1');
-- a NULL key is no key: every such call stores an event
SELECT (billing.record_usage('u3', 'api.calls', 1, '2026-03-01', NULL)).id IS NOT NULL AS stored
  FROM generate_series(1, 2);
SELECT count(*) AS stored FROM billing.usage_records WHERE user_id = 'u3';
-- usage sees it all
SELECT billing.usage('u1', 'api.calls', '2026-03-01', '2026-03-02') AS api_calls,
       billing.usage('u1', 'exports', '2026-03-01', '2026-03-02') AS exports;
SELECT count(*) AS before_bad FROM billing.usage_records \gset
-- bad input: each one an error with its SQLSTATE, and nothing stored
CREATE FUNCTION pg_temp.sqlstate_of(call text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE call;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT call, pg_temp.sqlstate_of('SELECT billing.record_usage(' || call || ')') AS error
  FROM (VALUES ($$'u1', 'api.calls', -1, '2026-03-01'$$),
               ($$'u1', 'API calls', 1, '2026-03-01'$$),
               ($$'u1', '', 1, '2026-03-01'$$),
               ($$'', 'api.calls', 1, '2026-03-01'$$),
               ($$NULL, 'api.calls', 1, '2026-03-01'$$),
               ($$'u1', NULL, 1, '2026-03-01'$$),
               ($$'u1', 'api.calls', NULL, '2026-03-01'$$),
               ($$'u1', 'api.calls', 1, NULL$$),
               ($$'u1', 'api.calls', 1, 'infinity'$$),
               ($$'u1', 'api.calls', 1, '-infinity'$$),
               ($$'u1', 'api.calls', 1, '10000-01-01 00:00+00'$$)) bad(call);
SELECT count(*) = :before_bad AS nothing_stored FROM billing.usage_records;
-- the error's details
SELECT billing.record_usage('u1', 'API calls', 1, '2026-03-01');
SELECT billing.record_usage('u1', 'api.calls', -3, '2026-03-01');
