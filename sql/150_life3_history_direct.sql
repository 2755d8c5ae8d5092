-- Session 11 (life3): a statement that changes one subscription writes its
-- history without a statement (glue/history.cpp, WriteHistoryRowDirectly),
-- only while billing.subscription_history is as shipped and the caller may
-- write it; otherwise through the statements, which keep what a DBA added.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS billing CASCADE;
DROP TABLE IF EXISTS public.history_seen;
DROP FUNCTION IF EXISTS public.history_seen();
DROP ROLE IF EXISTS life3_editor;
RESET client_min_messages;
CREATE EXTENSION billing;
SET timezone = 'UTC';
-- the intervals as the statements wrote them: a trial, paid, canceled at
-- its period end
SELECT (billing.start_trial('d-1', 'pro_monthly', '2026-01-01')).id AS trial \gset
SELECT (billing.record_payment(:trial, 2999, 'usd', true, '2026-01-05')).status;
SELECT (billing.cancel(:trial, true, '2026-01-10')).status;
SELECT status, previous_status, valid_from, valid_to, paid_since, removed, cancel_at_period_end, canceled_at,
	   created_at <= updated_at AS updated_after_created
  FROM billing.subscription_history WHERE subscription_id = :trial ORDER BY id;
-- ids from the table's sequence, as the INSERT's default takes them
SELECT count(*) = count(DISTINCT id) AS ids_distinct,
	   max(id) = (SELECT last_value FROM billing.subscription_history_id_seq) AS last_id_from_sequence
  FROM billing.subscription_history;

-- A trigger a DBA puts on the history fires for every history row
CREATE TABLE public.history_seen (op text, status text, valid_to timestamptz);
GRANT INSERT ON public.history_seen TO PUBLIC;
CREATE FUNCTION public.history_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.history_seen VALUES (TG_OP, NEW.status::text, NEW.valid_to);
	RETURN NEW;
END
$$;
CREATE TRIGGER seen AFTER INSERT OR UPDATE ON billing.subscription_history
	FOR EACH ROW EXECUTE FUNCTION public.history_seen();
SELECT (billing.reactivate(:trial, '2026-01-12')).status;
SELECT (billing.subscribe('d-2', 'pro_monthly', '2026-01-12', false)).status;
SELECT op, status, valid_to FROM public.history_seen ORDER BY op, status, valid_to;
DROP TRIGGER seen ON billing.subscription_history;

-- Who may update billing.subscriptions but not write its history is
-- refused, as the statements refuse them
CREATE ROLE life3_editor;
GRANT USAGE ON SCHEMA billing TO life3_editor;
GRANT SELECT, UPDATE ON billing.subscriptions TO life3_editor;
SET ROLE life3_editor;
\set VERBOSITY terse
UPDATE billing.subscriptions SET cancel_at_period_end = true, canceled_at = '2026-01-13' WHERE id = :trial;
\set VERBOSITY default
RESET ROLE;
SELECT cancel_at_period_end FROM billing.subscriptions WHERE id = :trial;

-- Two open intervals (one a DBA inserted): the change closes both, as the
-- statements close every open one
INSERT INTO billing.subscription_history (subscription_id, user_id, plan_id, status, price_cents, currency,
										  billing_interval, valid_from)
SELECT subscription_id, user_id, plan_id, status, price_cents, currency, billing_interval, valid_from
  FROM billing.subscription_history WHERE subscription_id = :trial AND valid_to = 'infinity';
SELECT (billing.cancel(:trial, true, '2026-01-15')).status;
SELECT count(*) FILTER (WHERE valid_to = 'infinity') AS open,
	   count(*) FILTER (WHERE valid_to = '2026-01-15') AS closed_at_cancel
  FROM billing.subscription_history WHERE subscription_id = :trial;

DROP TABLE public.history_seen;
DROP FUNCTION public.history_seen();
DROP OWNED BY life3_editor;
DROP ROLE life3_editor;
