-- Session 11 (hist4): a statement that changes several subscriptions (a
-- maintenance page, a DBA's UPDATE) writes their history without a
-- statement too (glue/history.cpp, WriteHistoryRowsDirectly), under the same
-- guards as one row (sql/150). Shown: the same history as the statements
-- write, byte for byte (the same scenario twice in one transaction, the
-- second time with a DBA's trigger on the history: the statements); no
-- history statement prepared and no foreign-key check (the subscriptions'
-- index scans) on the direct path; a row the direct path refuses in the
-- middle of a statement (two open intervals) sends it and the rest through
-- the statements, nothing written twice.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP FUNCTION IF EXISTS public.hist4_seen();
RESET client_min_messages;
SET timezone = 'UTC';
CREATE FUNCTION public.hist4_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
-- whether this backend prepared a history statement of the triggers
CREATE FUNCTION pg_temp.history_statements() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM pg_catalog.pg_backend_memory_contexts
	 WHERE name = 'CachedPlanSource' AND (ident LIKE 'INSERT INTO billing.subscription_history%'
		OR ident LIKE 'WITH c AS (SELECT * FROM ROWS FROM%' OR ident LIKE 'WITH closed AS (UPDATE billing.subscription_history%')
$$;
CREATE FUNCTION pg_temp.subscription_scans() RETURNS bigint LANGUAGE sql AS $$
	SELECT t.idx_scan FROM pg_catalog.pg_stat_xact_user_tables t WHERE t.schemaname = 'billing' AND t.relname = 'subscriptions'
$$;
CREATE TEMP TABLE scenario_scans (run text, scans bigint);
-- the scenario: six trials, one INSERT; four paid monthly; maintenance over
-- the trials' ends and a renewal; a DBA's UPDATE of every subscription
CREATE FUNCTION pg_temp.scenario(run text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	scans bigint;
BEGIN
	PERFORM billing.start_trial('h4-' || i, 'pro_monthly', '2030-01-01') FROM generate_series(1, 6) i;
	PERFORM billing.subscribe('h4-p' || i, 'pro_monthly', '2030-01-02', false) FROM generate_series(1, 4) i;
	PERFORM billing.run_maintenance('2030-01-16');
	PERFORM billing.run_maintenance('2030-02-03');
	scans := pg_temp.subscription_scans();
	UPDATE billing.subscriptions SET cancel_at_period_end = true, canceled_at = '2030-02-04'
	 WHERE user_id LIKE 'h4-p%' AND status = 'active';
	INSERT INTO scenario_scans VALUES (run, pg_temp.subscription_scans() - scans);
END
$$;
BEGIN;
CREATE EXTENSION billing;
SELECT pg_temp.scenario('direct');
SELECT pg_temp.history_statements() AS history_statements_prepared;
-- (kept as JSON: dropping the extension drops its types' columns)
CREATE TEMP TABLE direct AS SELECT pg_catalog.to_jsonb(h) AS r FROM billing.subscription_history h;
SELECT count(*) AS intervals, count(DISTINCT r->>'subscription_id') AS subscriptions,
	   count(*) FILTER (WHERE r->>'valid_to' = 'infinity') AS open FROM direct;
-- again, through the statements: a DBA's trigger on the history
SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
CREATE EXTENSION billing;
CREATE TRIGGER seen BEFORE INSERT OR UPDATE ON billing.subscription_history
	FOR EACH ROW EXECUTE FUNCTION public.hist4_seen();
SELECT pg_temp.scenario('statements');
SELECT pg_temp.history_statements() > 0 AS history_statements_prepared;
-- the same rows, every column (ids, times, updated_at included)
SELECT (SELECT count(*) FROM (SELECT r FROM direct EXCEPT ALL SELECT pg_catalog.to_jsonb(h) FROM billing.subscription_history h) d) AS only_direct,
	   (SELECT count(*) FROM (SELECT pg_catalog.to_jsonb(h) FROM billing.subscription_history h EXCEPT ALL SELECT r FROM direct) d) AS only_statements;
-- the UPDATE of four subscriptions: through the statements a foreign-key
-- check (an index scan of the subscriptions) per history row written, two
-- per subscription here (the closed interval too: this transaction inserted
-- it); directly none, only the UPDATE's own scan
SELECT run, scans FROM scenario_scans ORDER BY run;
COMMIT;
DROP TRIGGER seen ON billing.subscription_history;

-- Two open intervals on the second of three subscriptions one UPDATE
-- changes (in the order the UPDATE reads them): the first is written
-- directly, the second and third through the statements, each once
SELECT count(*) FROM (SELECT billing.start_trial('h4-o' || i, 'pro_monthly', '2030-03-01') FROM generate_series(1, 3) i) t;
INSERT INTO billing.subscription_history (subscription_id, user_id, plan_id, status, price_cents, currency,
										  billing_interval, valid_from)
SELECT subscription_id, user_id, plan_id, status, price_cents, currency, billing_interval, valid_from
  FROM billing.subscription_history WHERE user_id = 'h4-o2' AND valid_to = 'infinity';
BEGIN;
SELECT pg_temp.subscription_scans() AS scans0 \gset
UPDATE billing.subscriptions SET cancel_at_period_end = true, canceled_at = '2030-03-02' WHERE user_id LIKE 'h4-o%';
-- the UPDATE's own index scans and the statements' foreign-key checks of the
-- second and the third row, not of the first: 5 when all three go through
-- the statements
SELECT pg_temp.subscription_scans() - :scans0 AS fk_checks;
COMMIT;
SELECT user_id, count(*) AS intervals, count(*) FILTER (WHERE valid_to = 'infinity') AS open,
	   count(*) FILTER (WHERE valid_to = '2030-03-02') AS closed_now,
	   bool_and(cancel_at_period_end) FILTER (WHERE valid_to = 'infinity') AS open_canceled
  FROM billing.subscription_history WHERE user_id LIKE 'h4-o%' GROUP BY user_id ORDER BY user_id;
SELECT count(*) = count(DISTINCT id) AS ids_distinct FROM billing.subscription_history;

SET client_min_messages = warning;
DROP EXTENSION billing CASCADE;
RESET client_min_messages;
DROP FUNCTION public.hist4_seen();
