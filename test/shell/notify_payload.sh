#!/usr/bin/env bash
# NOTIFY billing_events carries ids, not personal data: PostgreSQL lets any
# role that can connect LISTEN on any channel. A role with no billing
# privilege listens while a payment fails for a user whose id is an e-mail
# address; the payload it receives names neither the user nor the address.
set -uo pipefail

db="billing_notify_$$"
cleanup() {
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS regress_notify_stranger" \
		>/dev/null 2>&1
}
trap cleanup EXIT
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db" -c "CREATE ROLE regress_notify_stranger LOGIN" ||
	exit 1
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION billing" \
	-c "SELECT id FROM billing.subscribe('ada@example.com', 'pro_monthly', with_trial => false)" >/dev/null || exit 1

# the stranger listens; another connection records the failed payment while
# it waits, and psql prints what arrived after its next command
out=$( {
	echo "LISTEN billing_events;"
	echo "SELECT pg_sleep(3);"
	echo "SELECT 1;"
} | psql -X -d "$db" -U regress_notify_stranger 2>&1 &
	sleep 1
	psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "SELECT status FROM billing.record_payment(
		(SELECT id FROM billing.subscriptions WHERE user_id = 'ada@example.com' AND ended_at IS NULL),
		2999, 'usd', false)" >/dev/null
	wait)
failed=0
line=$(grep 'Asynchronous notification "billing_events"' <<<"$out")
echo "   ${line:-no notification received}"
[ -n "$line" ] || { echo "FAIL: the listener received nothing"; echo "$out" | tail -5; failed=1; }
grep -q 'ada@example.com' <<<"$line" && { echo "FAIL: the payload names the user"; failed=1; }
grep -q '"kind": "payment_failed"' <<<"$line" || { echo "FAIL: the payload lacks its kind"; failed=1; }
[ "$failed" -eq 0 ] && echo "notification payload: ok"
exit "$failed"
