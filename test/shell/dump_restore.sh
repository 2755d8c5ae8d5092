#!/usr/bin/env bash
# pg_dump -Fc of a database using billing, pg_restore into a new database, and
# every table and sequence of schema billing must come back identical: the same
# rows (compared as whole rows, timestamps included) and the same sequence
# positions, so that new ids do not collide with restored ones. The restore
# itself must succeed without errors (shipped plans, seeded settings and the
# audit log must not clash with what CREATE EXTENSION installs).
#
# Run by test/run.sh with PGHOST/PGPORT/PGUSER set for the throwaway cluster.
set -uo pipefail

PG_BINDIR=$(pg_config --bindir)
src="billing_dump_src_$$"
dst="billing_dump_dst_$$"
plain="billing_dump_plain_$$"
dump=$(mktemp /tmp/billing-dump.XXXXXX)
failed=0

psql_q() { # psql_q DB SQL...
	local db=$1
	shift
	psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" "$@"
}
cleanup() {
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $src WITH (FORCE)" >/dev/null 2>&1
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $dst WITH (FORCE)" >/dev/null 2>&1
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $plain WITH (FORCE)" >/dev/null 2>&1
	rm -f "$dump" "$dump.sql" "$dump.log" "$dump.a" "$dump.b"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	failed=1
}

psql_q postgres -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst" -c "CREATE DATABASE $plain" || exit 1

echo "== building the source database"
psql_q "$src" >/dev/null <<'SQL' || { echo "FAIL: could not set up the source database"; exit 1; }
-- the application's schema (as in demo/schema.sql)
CREATE TABLE public.users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE public.rooms (
	id bigserial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES public.users (id),
	name text NOT NULL, deleted_at timestamptz);
CREATE TABLE public.participants (
	id bigserial PRIMARY KEY, room_id bigint NOT NULL REFERENCES public.rooms (id) ON DELETE CASCADE,
	name text NOT NULL, deleted_at timestamptz);
INSERT INTO public.users (email) VALUES ('ada@example.com'), ('grace@example.com');

CREATE EXTENSION billing;
SELECT billing.attach_users('public.users', 'id');
-- a new user after attaching gets a subscription from the trigger
SET billing.app_user = 'ops@example.com';
INSERT INTO public.users (email) VALUES ('linus@example.com'), ('barbara@example.com');

-- edit a shipped plan, add a custom one
UPDATE billing.subscription_plans SET price_cents = 3499, name = 'Pro (monthly, 2025)' WHERE code = 'pro_monthly';
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days, limits)
VALUES ('team_custom', 'Team (custom)', 'custom', 'monthly', 12345, 'usd', 7, '{"rooms": 20}');

-- settings
SELECT billing.configure('stripe_webhook_secret', 'whsec_one,whsec_two');
SELECT billing.configure('past_due_grace', '10 days');

-- a user moved to the custom plan: history is kept
UPDATE billing.subscriptions SET status = 'canceled', ended_at = now(), canceled_at = now()
 WHERE user_id = '2';
INSERT INTO billing.subscriptions
	(user_id, plan_id, status, price_cents, currency, billing_interval, started_at, current_period_start,
	 current_period_end, stripe_customer_id, stripe_subscription_id, metadata)
SELECT '2', p.id, 'active', p.price_cents, p.currency, p.billing_interval, now(), now(), now() + interval '1 month',
	   'cus_123', 'sub_123', '{"source": "dump test"}'
  FROM billing.subscription_plans p WHERE p.code = 'team_custom';

-- invoices, payments (one refunded), usage
INSERT INTO billing.invoices (number, user_id, subscription_id, status, billing_reason, currency,
		period_start, period_end, subtotal_cents, total_cents, amount_paid_cents, amount_due_cents, lines,
		issued_at, paid_at, stripe_invoice_id)
SELECT 'INV-' || nextval('billing.invoice_number_seq'), s.user_id, s.id, 'paid', 'subscription_create', 'usd',
	   s.current_period_start, s.current_period_end, 12345, 12345, 12345, 0,
	   '[{"description": "Team (custom)", "amount_cents": 12345}]', now(), now(), 'in_123'
  FROM billing.subscriptions s WHERE s.stripe_subscription_id = 'sub_123';
INSERT INTO billing.invoices (number, user_id, currency, issued_at, total_cents, amount_due_cents)
VALUES ('INV-' || nextval('billing.invoice_number_seq'), '1', 'usd', now(), 500, 500);
INSERT INTO billing.payments (user_id, subscription_id, invoice_id, amount_cents, currency, status,
		external_id, stripe_payment_intent_id, stripe_charge_id, paid_at)
SELECT i.user_id, i.subscription_id, i.id, 12345, 'usd', 'succeeded', 'evt_1', 'pi_1', 'ch_1', now()
  FROM billing.invoices i WHERE i.stripe_invoice_id = 'in_123';
INSERT INTO billing.payments (user_id, subscription_id, amount_cents, currency, status, refund_of, paid_at)
SELECT p.user_id, p.subscription_id, -345, 'usd', 'succeeded', p.id, now()
  FROM billing.payments p WHERE p.external_id = 'evt_1';
INSERT INTO billing.payments (user_id, amount_cents, currency, status, failure_code, failure_message, paid_at)
VALUES ('1', 500, 'usd', 'failed', 'card_declined', 'Your card was declined.', now());
-- usage records are partitioned by month: this month's partition (and the next
-- two) exist, as run_maintenance makes them; 2020 has none (the default partition)
SELECT count(*) >= 0 FROM billing._usage_partitions(now());
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at, idempotency_key)
VALUES ('1', 'api_calls', 3, '2020-01-15 12:00+00', 'old-key');
INSERT INTO billing.usage_records (user_id, subscription_id, metric, quantity, recorded_at, idempotency_key, rolled_up)
SELECT '2', s.id, 'rooms_created', 1, now() - interval '2 days', 'k1', true
  FROM billing.subscriptions s WHERE s.stripe_subscription_id = 'sub_123';
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at)
VALUES ('1', 'participants_joined', 7, now());
INSERT INTO billing.usage_daily (user_id, metric, day, quantity)
VALUES ('2', 'rooms_created', (now() - interval '2 days')::date, 1);
-- the refunded payment is updated after its refund, so the refund comes
-- first in the table's physical order (the self-reference must still restore)
UPDATE billing.payments SET stripe_charge_id = 'ch_1b' WHERE external_id = 'evt_1';
-- a soft-deleted row survives as such
UPDATE billing.usage_records SET deleted_at = now() WHERE user_id = '1';
SQL

# Every table of schema billing must hold rows, or the comparison proves
# nothing for it (a new table makes this fail until the test fills it).
empty=$(psql -X -q -d "$src" -c "DO \$\$ DECLARE t regclass; n bigint; e text := ''; BEGIN
	FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r','p') ORDER BY c.relname LOOP
		EXECUTE format('SELECT count(*) FROM %s', t) INTO n;
		IF n = 0 THEN e := e || ' ' || t::text; END IF;
	END LOOP; RAISE NOTICE 'empty:%', e; END \$\$" 2>&1 | sed -n 's/.*empty://p')
if [ -n "${empty// /}" ]; then
	echo "note: tables without rows in the source (not proven by this test):$empty"
fi

echo "== pg_dump -Fc"
"$PG_BINDIR/pg_dump" -Fc -d "$src" -f "$dump" || { echo "FAIL: pg_dump exited $?"; exit 1; }
"$PG_BINDIR/pg_dump" -Fp -d "$src" -f "$dump.sql" || { echo "FAIL: pg_dump -Fp exited $?"; exit 1; }

echo "== pg_restore"
"$PG_BINDIR/pg_restore" -d "$dst" "$dump" >"$dump.log" 2>&1
rc=$?
if [ $rc -ne 0 ] || [ -s "$dump.log" ]; then
	fail "pg_restore exited $rc"
	sed 's/^/   /' "$dump.log" | head -40
fi
rm -f "$dump.log"
echo "== psql < plain-format dump"
psql -X -q -v ON_ERROR_STOP=1 -d "$plain" -f "$dump.sql" >"$dump.log" 2>&1 || {
	fail "restoring the plain-format dump with psql failed"
	sed 's/^/   /' "$dump.log" | head -20
}

# One line per table: name, row count, md5 of all rows in a stable order.
# Sequences: name, last_value, is_called.
snapshot() { # snapshot DB
	psql_q "$1" <<'SQL'
CREATE FUNCTION pg_temp.snapshot() RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	r record;
	line text;
BEGIN
	FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c
			  WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'p', 'S')
			  ORDER BY c.relname LOOP
		IF r.relkind = 'S' THEN
			EXECUTE format('SELECT %L || '' sequence '' || last_value || '' '' || is_called FROM %s', r.rel, r.rel)
			   INTO line;
		ELSE
			EXECUTE format('SELECT %L || '' rows '' || count(*) || '' '' || coalesce(md5(string_agg(t::text, ''|'' ORDER BY t::text)), ''-'') FROM %s t',
						   r.rel, r.rel) INTO line;
		END IF;
		RETURN NEXT line;
	END LOOP;
END
$$;
SELECT * FROM pg_temp.snapshot();
SQL
}

compare() { # compare DB: every table and sequence of schema billing against the source
	local db=$1 before after line name other
	before=$(snapshot "$src") || { fail "could not snapshot the source database"; return; }
	after=$(snapshot "$db") || { fail "could not snapshot $db"; return; }
	while IFS= read -r line; do
		name=${line%% *}
		other=$(grep -E "^${name//./[.]} " <<<"$after" || true)
		if [ "$line" != "$other" ]; then
			fail "$name differs after restore ($db)"
			echo "   source:   $line"
			echo "   restored: ${other:-<missing>}"
			if [[ "$line" == *" rows "* ]]; then
				psql_q "$src" -c "SELECT t::text FROM $name t ORDER BY 1" >"$dump.a" 2>&1
				psql_q "$db" -c "SELECT t::text FROM $name t ORDER BY 1" >"$dump.b" 2>&1
				diff "$dump.a" "$dump.b" | head -20 | cut -c1-300 | sed 's/^/      /'
				rm -f "$dump.a" "$dump.b"
			fi
		fi
	done <<<"$before"
	while IFS= read -r line; do
		name=${line%% *}
		grep -qE "^${name//./[.]} " <<<"$before" || fail "$name exists only after restore ($db)"
	done <<<"$after"
	echo "$before" | sed 's/^/   /'
}

echo "== comparing schema billing: pg_restore"
compare "$dst"
echo "== comparing schema billing: plain dump"
compare "$plain"

echo "== the restored database keeps working"
# No shipped plan twice, the edited plan keeps its edit, untouched ones stay pristine.
out=$(psql_q "$dst" -c "SELECT string_agg(code || ':' || price_cents || ':' || pristine, ',' ORDER BY id) FROM billing.subscription_plans")
want="free:0:true,pro_monthly:3499:false,pro_yearly:28800:true,enterprise_yearly:99900:true,team_custom:12345:false"
[ "$out" = "$want" ] || fail "plans after restore: $out (want $want)"
# New rows get fresh ids in every table with a sequence (nextval must not collide).
out=$(psql_q "$dst" 2>&1 <<'SQL'
SET billing.app_user = 'restore-check';
INSERT INTO public.users (email) VALUES ('new-after-restore@example.com');
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency)
VALUES ('after_restore', 'After restore', 'custom', 'yearly', 1, 'usd');
SELECT billing.configure('stripe_tolerance', '7 minutes');
INSERT INTO billing.invoices (number, user_id, currency, issued_at)
VALUES ('INV-' || nextval('billing.invoice_number_seq'), '1', 'usd', now());
INSERT INTO billing.payments (user_id, amount_cents, currency, status, paid_at) VALUES ('1', 1, 'usd', 'succeeded', now());
INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at) VALUES ('1', 'rooms_created', 1, now());
SELECT billing.attach_users('public.users', 'id');
SELECT count(*) FROM billing.subscriptions s JOIN public.users u ON s.user_id = u.id::text
 WHERE u.email = 'new-after-restore@example.com' AND s.ended_at IS NULL;
-- changes after the restore are audited again
SELECT count(DISTINCT table_name) FROM billing.audit_log WHERE app_user = 'restore-check';
SQL
)
[ "$(tail -2 <<<"$out" | tr '\n' ' ')" = "1 5 " ] || { fail "inserting after restore failed"; echo "$out" | sed 's/^/   /'; }
# The monthly partitions (of the records and of the daily totals) came back
# attached, each with its two indexes, once (pg_restore attaches a partition
# before it creates the partition's indexes).
for parent in usage_records usage_daily; do
	parts="SELECT string_agg(c.relname || ':' || (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid), ',' ORDER BY c.relname)
	FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhparent = 'billing.$parent'::regclass"
	out=$(psql_q "$dst" -c "$parts")
	want=$(psql_q "$src" -c "$parts")
	[ "$(tr ',' '\n' <<<"$want" | wc -l)" -ge 4 ] || fail "the source has no monthly $parent partitions: $want"
	[ "$out" = "$want" ] || fail "$parent partitions after restore: $out (want $want)"
done
# a rollup after the restore adds to a restored total, in its partition (the
# default one, or this month's: the rollup adds through the parent), and
# into this month's: 1 + 4 rooms, 6 calls
out=$(psql_q "$dst" -c "INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at)
	VALUES ('2', 'rooms_created', 4, now() - interval '2 days'), ('2', 'api_calls', 6, now())" \
	-c "SELECT billing.rollup_usage() >= 2" \
	-c "SELECT string_agg(d.metric || ' ' || d.quantity || ' ' || (d.tableoid = 'billing.usage_daily_default'::regclass), ',' ORDER BY d.metric)
		  FROM billing.usage_daily d WHERE d.user_id = '2' AND d.day >= (now() - interval '2 days')::date" 2>&1)
this_month=$([ "$(date -u -d '2 days ago' +%m)" = "$(date -u +%m)" ] && echo false || echo true)
[ "$(tail -2 <<<"$out" | tr '\n' ' ')" = "t api_calls 6 false,rooms_created 5 $this_month " ] || fail "a rollup after restore: $out"

# Restored without owners (pg_restore --no-owner, as a managed service or
# another role restores): the monthly partitions then belong to the
# restoring role, not billing_owner. A room's first insert of a new day (its
# counter's pending usage of the day before goes to the totals) and
# run_maintenance (its rollup) add through the parent: no 42501 (session 7's
# final review F1: both failed, "permission denied for table usage_daily_...").
noowner="billing_dump_noowner_$$"
psql_q postgres -c "CREATE DATABASE $noowner" || fail "could not create $noowner"
"$PG_BINDIR/pg_restore" --no-owner -d "$noowner" "$dump" >"$dump.log" 2>&1 || fail "pg_restore --no-owner: $(tail -3 "$dump.log")"
owners=$(psql_q "$noowner" -c "SELECT count(*) FROM pg_catalog.pg_class c WHERE c.relname ~ '^usage_daily_2'
	AND c.relowner <> (SELECT p.relowner FROM pg_catalog.pg_class p WHERE p.oid = 'billing.usage_daily'::regclass)")
[ "${owners:-0}" -gt 0 ] || fail "after a restore without owners the partitions should belong to the restoring role: $owners"
out=$(psql_q "$noowner" \
	-c "INSERT INTO public.rooms (owner_id, name) VALUES (1, 'restored room')" \
	-c "SELECT billing.attach_participant_quota('public.participants', 'room_id', 'public.rooms', 'owner_id') >= 0" \
	-c "INSERT INTO public.participants (room_id, name) SELECT max(r.id), 'first' FROM public.rooms r" \
	-c "UPDATE billing.quota_counters q SET usage_day = (now() AT TIME ZONE 'UTC')::date - 1, usage_pending = 2
		  FROM billing.attachments a WHERE a.id = q.attachment_id AND a.kind = 'participants'
		   AND q.key = (SELECT max(r.id)::text FROM public.rooms r)" \
	-c "INSERT INTO public.participants (room_id, name) SELECT max(r.id), 'after restore' FROM public.rooms r" \
	-c "SELECT q.used FROM billing.quota_counters q WHERE q.key = (SELECT max(r.id)::text FROM public.rooms r)" \
	-c "INSERT INTO billing.usage_records (user_id, metric, quantity, recorded_at) VALUES ('2', 'api_calls', 3, now())" \
	-c "SELECT count(*) >= 0 FROM billing.run_maintenance()" 2>&1)
grep -q "permission denied\|ERROR" <<<"$out" && fail "after a restore without owners: $out"
[ "$(tail -2 <<<"$out" | head -1)" = "2" ] || fail "after a restore without owners, the room's counter: $out"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $noowner WITH (FORCE)" >/dev/null 2>&1

if [ $failed -ne 0 ]; then
	echo "dump/restore: FAILED"
	exit 1
fi
echo "dump/restore: every table and sequence of schema billing is identical after restore"
