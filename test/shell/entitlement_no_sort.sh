#!/usr/bin/env bash
# The plan that applies to a user (billing.effective_plan, and the quota
# trigger's fill for a first participant: src/glue/lifecycle.cpp
# SubscriptionAt) loads the subscription current at a time with
# "ORDER BY s.started_at DESC, s.id DESC LIMIT 1". The index
# subscriptions_user_history holds (user_id, started_at, id), so that the
# plan reads the index's first row backwards and sorts nothing (session 11:
# the Sort cost the first participant into a fresh room 42,000 of its
# 635,000 instructions, callgrind at 10,000 rooms). Checked on the
# statement's plan as auto_explain prints it, for a user with two
# subscriptions (one ended).
set -uo pipefail

db="billing_entitlement_$$"
cleanup() { psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; }
trap cleanup EXIT

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db" >/dev/null || exit 1
out=$(psql -X -At -v ON_ERROR_STOP=1 -d "$db" 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION billing;
SELECT id AS first FROM billing.start_trial('u1', 'pro_monthly', now() - interval '3 days') \gset
SELECT status FROM billing.cancel(:first, false, now() - interval '2 days');
SELECT status FROM billing.subscribe('u1', 'pro_monthly', now() - interval '1 day', false);
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
SELECT 'plan=' || code FROM billing.effective_plan('u1', now());
SQL
)
failed=0
# the load's plan: from its query text to the next message
load=$(awk '/Query Text: SELECT id, user_id, plan_id.*ORDER BY s.started_at DESC, s.id DESC LIMIT 1/ { on = 1; next }
	on && /^(NOTICE|LOG):/ { on = 0 } on' <<<"$out")
[ -n "$load" ] || { echo "FAIL: the load of the subscription current at a time was not seen"; echo "$out" | tail -30; failed=1; }
grep -E 'Index (Only )?Scan|Sort' <<<"$load" | sed 's/^ */   /; s/  (cost=.*//'
grep -q 'Sort' <<<"$load" && { echo "FAIL: the load of the subscription current at a time sorts"; failed=1; }
grep -q 'Index Scan Backward using subscriptions_user_history' <<<"$load" ||
	{ echo "FAIL: the load does not read subscriptions_user_history backwards"; echo "$load"; failed=1; }
grep -q '^plan=' <<<"$out" || { echo "FAIL: billing.effective_plan returned no plan"; echo "$out" | tail -5; failed=1; }
[ "$failed" -eq 0 ] && echo "entitlement load without a sort: ok"
exit "$failed"
