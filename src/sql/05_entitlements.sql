-- The customer's credit balance in a currency: overpayments, negative
-- proration totals and what was paid toward voided invoices, less what
-- invoices took. It pays the next invoice before any payment is due.
CREATE FUNCTION billing.credit_balance(user_id text, currency text DEFAULT 'usd')
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT COALESCE(pg_catalog.sum(CASE WHEN e.kind = 'credit_to_invoice' THEN -e.amount_cents ELSE e.amount_cents END), 0)::bigint
	  FROM billing.ledger_entries e
	 WHERE e.user_id = $1 AND e.currency = pg_catalog.lower($2) AND e.deleted_at IS NULL
	   AND e.kind IN ('payment_to_credit', 'proration_credit', 'void_to_credit', 'credit_to_invoice')
$$;
COMMENT ON FUNCTION billing.credit_balance(text, text) IS
	'The customer''s credit balance (minor units) in a currency, applied to the next invoice';

-- The plan whose limits and features apply to a user at a given time (SPEC §2,
-- §3, §8), computed for that time whether or not maintenance has run since:
-- a trial until its end; active, past_due or canceled until the grace period
-- of the first unpaid invoice (or failed payment) runs out, a canceled one at
-- most until its period end; a scheduled change from its time; Free otherwise.
-- It mirrors the core's DueAction (src/core/subscription.cpp), which maintenance
-- then applies; the model test (test/model) checks that the two agree.
CREATE FUNCTION billing.effective_plan(user_id text, at timestamptz DEFAULT pg_catalog.now())
RETURNS billing.subscription_plans
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT p.*
	  FROM (SELECT CASE
				   WHEN s.status = 'trialing' THEN CASE WHEN s.trial_end > $2 THEN s.plan_id END
				   WHEN s.status IN ('active', 'past_due', 'canceled') THEN
					   CASE WHEN (s.status <> 'canceled' OR s.current_period_end > $2)
								 AND (d.dunning_from IS NULL OR d.dunning_from + g.grace > $2)
							THEN CASE WHEN s.status = 'active' AND s.scheduled_change_at <= $2
									  THEN s.scheduled_plan_id ELSE s.plan_id END
					   END
				   END AS plan_id, 0 AS rank
			  FROM billing.subscriptions s
			  LEFT JOIN billing.subscription_plans sp ON sp.id = s.scheduled_plan_id
			 CROSS JOIN LATERAL (SELECT billing._setting('past_due_grace', '14 days')::interval AS grace) g
			 CROSS JOIN LATERAL (SELECT COALESCE(
					s.past_due_since,
					(SELECT pg_catalog.min(i.due_at) FROM billing.invoices i
					  WHERE i.subscription_id = s.id AND i.status = 'open' AND i.deleted_at IS NULL),
					-- a renewal maintenance has not issued yet, that credit will not pay,
					-- falls due 3 days after the period end (core: kInvoiceDueAfter)
					CASE WHEN s.status IN ('active', 'past_due') AND s.current_period_end <= $2 AND s.price_cents > 0
							  AND billing.credit_balance(s.user_id, s.currency)
								  < COALESCE(sp.price_cents, s.price_cents)
						 THEN s.current_period_end + interval '3 days' END) AS dunning_from) d
			 WHERE s.user_id = $1
			   AND s.deleted_at IS NULL
			   AND s.started_at <= $2
			   AND (s.ended_at IS NULL OR s.ended_at > $2)
			UNION ALL
			SELECT f.id, 1 FROM billing.subscription_plans f WHERE f.code = 'free') AS candidate
	  JOIN billing.subscription_plans p ON p.id = candidate.plan_id
	 ORDER BY candidate.rank
	 LIMIT 1
$$;
COMMENT ON FUNCTION billing.effective_plan(text, timestamptz) IS
	'The plan whose limits and features apply to the user at the given time';

-- Plans for a pricing page.
CREATE VIEW billing.pricing AS
	SELECT code, name, tier, billing_interval, price_cents, currency, trial_days, limits, features
	  FROM billing.subscription_plans
	 WHERE active AND deleted_at IS NULL
	 ORDER BY sort_order, price_cents, code;
COMMENT ON VIEW billing.pricing IS 'Active plans with prices, trial days, limits and features, for a pricing page';
GRANT SELECT ON billing.pricing TO PUBLIC;

-- Internal: the application-table column a trigger argument names, as text.
CREATE FUNCTION billing._check_column(relation regclass, col name) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
					WHERE a.attrelid = relation AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
		RAISE EXCEPTION 'column "%" of relation % does not exist', col, relation USING ERRCODE = '42703';
	END IF;
END
$$;

-- Gives each new user a Free subscription.
CREATE FUNCTION billing._user_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	uid text := pg_catalog.to_jsonb(NEW) ->> TG_ARGV[0];
BEGIN
	IF uid IS NOT NULL AND uid <> '' THEN
		PERFORM billing._start_free(uid, pg_catalog.now());
	END IF;
	RETURN NULL;
END
$$;

-- Internal: a Free subscription for a user that has no current one.
CREATE FUNCTION billing._start_free(user_id text, at timestamptz) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	INSERT INTO billing.subscriptions
		(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start)
	SELECT $1, p.id, 'active', p.price_cents, p.currency, p.billing_interval, $2, $2
	  FROM billing.subscription_plans p WHERE p.code = 'free'
	ON CONFLICT (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL DO NOTHING
$$;

CREATE FUNCTION billing.attach_users(users regclass, id_column name) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	backfilled bigint;
BEGIN
	IF users IS NULL OR id_column IS NULL THEN
		RAISE EXCEPTION 'users table and id column must not be null' USING ERRCODE = '22023';
	END IF;
	PERFORM billing._check_column(users, id_column);
	-- attaching again with the same column changes nothing
	INSERT INTO billing.attachments AS a (kind, relation, key_column)
	VALUES ('users', users, id_column)
	ON CONFLICT (relation, kind) DO UPDATE SET key_column = EXCLUDED.key_column
		WHERE a.key_column IS DISTINCT FROM EXCLUDED.key_column;

	IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = users AND t.tgname = 'billing_user_inserted') THEN
		EXECUTE pg_catalog.format('DROP TRIGGER billing_user_inserted ON %s', users);
	END IF;
	EXECUTE pg_catalog.format(
		'CREATE TRIGGER billing_user_inserted AFTER INSERT ON %s
		 FOR EACH ROW EXECUTE FUNCTION billing._user_inserted(%L)', users, id_column);

	EXECUTE pg_catalog.format(
		'INSERT INTO billing.subscriptions
			(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start)
		 SELECT u.%1$I::text, p.id, ''active'', p.price_cents, p.currency, p.billing_interval, now(), now()
		   FROM %2$s u CROSS JOIN billing.subscription_plans p
		  WHERE p.code = ''free'' AND u.%1$I IS NOT NULL
		 ON CONFLICT (user_id) WHERE ended_at IS NULL AND deleted_at IS NULL DO NOTHING', id_column, users);
	GET DIAGNOSTICS backfilled = ROW_COUNT;
	RETURN backfilled;
END
$$;
COMMENT ON FUNCTION billing.attach_users(regclass, name) IS
	'Gives every existing and every new user of the table a Free subscription; returns how many were backfilled';

-- Removes billing's triggers from an application table; its rows are untouched.
CREATE FUNCTION billing.detach(relation regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t name;
	parent regclass;
BEGIN
	FOR t IN SELECT tg.tgname FROM pg_catalog.pg_trigger tg
			  WHERE tg.tgrelid = relation AND NOT tg.tgisinternal AND tg.tgname LIKE 'billing\_%'
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, relation);
	END LOOP;
	-- a participants table's attachment also watches its rooms table
	FOR t, parent IN SELECT tg.tgname, a.parent_relation FROM billing.attachments a
					   JOIN pg_catalog.pg_trigger tg ON tg.tgrelid OPERATOR(pg_catalog.=) a.parent_relation
					  WHERE a.relation OPERATOR(pg_catalog.=) detach.relation
						AND tg.tgname OPERATOR(pg_catalog.=) ('billing_quota_room_owner_' || a.id)
	LOOP
		EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', t, parent);
	END LOOP;
	DELETE FROM billing.attachments a WHERE a.relation = detach.relation;
END
$$;
COMMENT ON FUNCTION billing.detach(regclass) IS 'Removes billing''s triggers from an application table';

-- DROP EXTENSION billing first detaches every application table, so the
-- triggers on them (which depend on the extension's functions) do not block it
-- and the tables and rows stay as they were.
CREATE FUNCTION billing._before_drop_extension() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r regclass;
BEGIN
	IF pg_catalog.lower(pg_catalog.current_query()) !~ 'drop\s+extension.*billing' THEN
		RETURN;
	END IF;
	FOR r IN SELECT DISTINCT a.relation FROM billing.attachments a LOOP
		PERFORM billing.detach(r);
	END LOOP;
END
$$;
CREATE EVENT TRIGGER billing_before_drop_extension ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION') EXECUTE FUNCTION billing._before_drop_extension();
