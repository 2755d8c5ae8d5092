#!/usr/bin/env bash
# Gate: hostile input for every function. Every function and procedure in
# schema billing that a billing role may execute is called, for each argument
# in turn, with each hostile value of its type (NULL, empty and 1 MB strings,
# malformed JSON, 0/-1/max/min numbers, ±infinity and year 294276 times,
# system catalogs and billing's own tables as regclass; hostile_input.sql),
# the other arguments valid. Each call must succeed or fail with a SQLSTATE
# from the README's error table (so never XX000, never a crash, never the
# statement_timeout), and a failing call must leave every billing table as it
# was (a checksum). A NULL required argument must be answered 22004, a time
# outside 0001-9999 22008 (unless the function refuses the role outright with
# 42501, or the README documents another answer: gate.documented_null below).
# Stops at the first violation and prints the call.
#
# The caller is a role below superuser, a member of billing_app,
# billing_analyst and billing_admin that owns the application's tables (so
# that attach_* and detach get past their owner check), with client_encoding LATIN1 (an error text
# cut inside a UTF-8 character cannot be sent to it). Its calls are not
# counted by the function coverage gate (track_functions = none).
set -euo pipefail
cd "$(dirname "$0")"
# HOSTILE_SHADOWS=1: the shadowing gate (shadowing.sh) runs the same calls
# after the caller planted shadowing objects (shadows.sql).
shadows=${HOSTILE_SHADOWS:-0}
db=billing_gate_hostile
[ "$shadows" = 1 ] && db=billing_gate_shadows
role=$db
timeout=${HOSTILE_TIMEOUT:-2s}
out=$(mktemp -d /tmp/billing-hostile.XXXXXX)
chmod 755 "$out"
cleanup() {
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1 || true
	rm -rf "$out"
}
trap cleanup EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
	-c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS $role" -c "CREATE DATABASE $db" \
	-c "ALTER DATABASE $db SET track_functions = 'none'"
# (the billing roles come with the extension)
q -c "SET client_min_messages = warning" -c "CREATE EXTENSION billing" -f app_schema.sql -f hostile_input.sql \
	-c "CREATE ROLE $role LOGIN IN ROLE billing_app, billing_analyst, billing_admin" \
	-c "GRANT USAGE ON SCHEMA gate TO $role" -c "GRANT EXECUTE ON FUNCTION gate.judge(int, text) TO $role" \
	-c "ALTER SCHEMA app OWNER TO $role" -c "ALTER TABLE app.users OWNER TO $role" \
	-c "ALTER TABLE app.rooms OWNER TO $role" -c "ALTER TABLE app.participants OWNER TO $role" >/dev/null

# A small book of business, so that the valid arguments name real things.
q >/dev/null <<'SQL'
SELECT billing.configure('stripe_webhook_secret', 'whsec_hostile');
SELECT billing.subscribe('1', 'pro_monthly', '2026-06-01 00:00+00', with_trial => false);
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = '1' AND ended_at IS NULL),
							  2999, 'usd', true, '2026-06-01 01:00+00', 'pi_hostile');
SELECT billing.start_trial('2', 'pro_monthly', '2026-06-01 00:00+00');
SELECT billing.record_usage('1', 'api.calls', 3, '2026-06-02 00:00+00', 'k1');
INSERT INTO app.users SELECT g, 'u' || g FROM generate_series(1, 3) g;
INSERT INTO app.rooms VALUES (1, 1, NULL), (2, 1, NULL);
INSERT INTO app.participants (room_id, person) VALUES (1, 'a'), (1, 'b');
SQL
sub=$(q -c "SELECT id FROM billing.subscriptions WHERE user_id = '1' AND ended_at IS NULL")
payment=$(q -c "SELECT id FROM billing.payments WHERE external_id = 'pi_hostile'")
body='{"id":"evt_hostile","type":"customer.created","created":1781049600,"data":{"object":{"id":"cus_h","object":"customer"}}}'
sig=$(printf '%s' "1781049600.$body" | openssl dgst -sha256 -hmac whsec_hostile | sed 's/.*= //')
q >/dev/null <<SQL
INSERT INTO gate.baseline VALUES
	('user_id', 'text', '''1'''), ('plan_code', 'text', '''pro_yearly'''), ('metric', 'text', '''api.calls'''),
	('quota', 'text', '''rooms'''), ('feature', 'text', '''api'''), ('currency', 'text', '''usd'''),
	('grain', 'text', '''day'''), ('key', 'text', '''past_due_grace'''), ('value', 'text', '''14 days'''),
	('payload', 'text', \$q\$'$body'\$q\$), ('signature_header', 'text', '''t=1781049600,v1=$sig'''),
	('secret', 'text', '''whsec_hostile'''), ('subscription_id', 'bigint', '$sub'), ('payment_id', 'bigint', '$payment'),
	('amount_cents', 'bigint', '100'), ('quantity', 'bigint', '1'), ('batch_size', 'integer', '10'),
	('users', 'regclass', '''app.users'''), ('rooms', 'regclass', '''app.rooms'''),
	('participants', 'regclass', '''app.participants'''), ('relation', 'regclass', '''app.participants'''),
	('id_column', 'name', '''id'''), ('owner_column', 'name', '''owner_id'''), ('room_column', 'name', '''room_id'''),
	('room_owner_column', 'name', '''owner_id'''), ('p_kind', 'text', '''participants'''), ('from_time', 'timestamptz', '''2026-06-01 00:00+00'''),
	('to_time', 'timestamptz', '''2026-07-01 00:00+00'''), ('at', 'timestamptz', '''2026-06-10 12:00:00+00'''),
	('tolerance', 'interval', '''5 minutes'''),
	(NULL, 'text', '''x'''), (NULL, 'name', '''id'''), (NULL, 'bigint', '1'), (NULL, 'integer', '1'),
	(NULL, 'boolean', 'true'), (NULL, 'timestamptz', '''2026-06-10 12:00:00+00'''), (NULL, 'date', '''2026-06-10'''),
	(NULL, 'interval', '''1 day'''), (NULL, 'jsonb', '''{}'''), (NULL, 'regclass', '''app.users'''),
	(NULL, 'text[]', '''{}'''), (NULL, 'bigint[]', '''{}'''), (NULL, 'name[]', '''{id}''');
SQL
# The README's error table is the list of SQLSTATEs a caller may see.
allowed=$(sed -n '/^## Errors/,/^## /p' ../../README.md | sed -nE 's/^\| `([0-9A-Z]{5})` \|.*/\1/p')
[ -n "$allowed" ] || { echo "no SQLSTATEs found in README.md's error table"; exit 1; }
for s in 00000 $allowed; do echo "$s"; done | q -c "\copy gate.allowed_sqlstates FROM STDIN"
# NULL answered otherwise than 22004, as the README documents (keep short).
q >/dev/null <<'SQL'
INSERT INTO gate.documented_null VALUES
	('billing.stripe_verify(text, text, text, interval, timestamptz)', 'signature_header', '00000',
	 'Stripe: a request without the header does not verify (false)'),
	('billing.stripe_ingest(text, text, timestamptz)', 'signature_header', 'QB020',
	 'Stripe: a request without the header does not verify (QB020)');
SQL
total=$(q -c "SELECT gate.generate()")
q -c "INSERT INTO gate.state SELECT gate.checksum(), ${HOSTILE_ALL:-0} = 1"

# The script: each call, then its judgement; \quit at the first violation.
if [ "$shadows" = 1 ]; then
	q -c "GRANT CREATE ON SCHEMA public TO $role"
	printf '\\i %s/shadows.sql\n\\warn shadow_workload.sql\n\\i %s/shadow_workload.sql\n' "$PWD" "$PWD" >"$out/calls.sql"
fi
q -c "SELECT format(E'\\\\warn call %s\n%s \\\\g /dev/null\nSELECT * FROM gate.judge(%s, :''SQLSTATE'') \\\\gset\n\\\\if :stop\n\\\\echo :verdict\n\\\\quit\n\\\\endif', n, sql, n)
      FROM gate.calls ORDER BY n" >>"$out/calls.sql"
echo "allowed SQLSTATEs (README): $(echo $allowed); $total calls; statement_timeout $timeout"
start=$(date +%s)
set +e
PGOPTIONS="-c statement_timeout=$timeout -c client_min_messages=warning" PGCLIENTENCODING=LATIN1 \
	psql -X -q -U "$role" -d "$db" -f "$out/calls.sql" >"$out/stdout" 2>"$out/stderr"
rc=$?
set -e
judged=$(q -c "SELECT count(*) FROM gate.results")
echo "$judged of $total calls judged in $(($(date +%s) - start)) s"
refused=$(q -c "SELECT string_agg(DISTINCT c.fn::regproc::text, ', ') FROM gate.calls c JOIN gate.results r USING (n)
                 WHERE c.label = 'baseline' AND r.sqlstate = '42501'")
[ -z "$refused" ] || echo "refused to the caller with valid arguments too (42501), arguments not judged: $refused"
bad=0
if grep -q 'WARNING:  VIOLATION' "$out/stderr"; then # HOSTILE_ALL=1
	grep -o 'VIOLATION.*' "$out/stderr"
	bad=1
fi
if grep -aq '^VIOLATION' "$out/stdout"; then
	grep '^VIOLATION' "$out/stdout"
	echo "its error: $(grep -aE '^psql:.*(ERROR|FATAL)' "$out/stderr" | tail -1 | cut -c1-600)"
	bad=1
elif [ "$rc" -ne 0 ] || [ "$judged" -lt "$total" ]; then
	next=$((judged + 1))
	echo "VIOLATION: psql ended (exit $rc) after $judged calls; call $next: $(q -c "SELECT left(sql, 600) FROM gate.calls WHERE n = $next")"
	tail -5 "$out/stderr" | cut -c1-600
	bad=1
fi
if [ "$shadows" = 1 ]; then
	# the planting itself must have worked
	if sed '/^shadow_workload.sql$/q' "$out/stderr" | grep -q 'ERROR'; then
		echo "VIOLATION: planting the shadows failed:"
		sed '/^shadow_workload.sql$/q' "$out/stderr" | grep -A3 'ERROR' | head -20
		bad=1
	fi
	echo "the trigger workload's errors (a refusal past Free's limit is expected):"
	sed -n '/^shadow_workload.sql$/,/^call 1$/p' "$out/stderr" | grep -a 'ERROR' | sed 's/^psql:[^ ]* /  /' | cut -c1-200
	# each planted object that ran, after the call (or workload) that ran it
	ran=$(awk '/^call [0-9]+$|^shadow_workload/ { at = $0 } /SHADOW RAN/ { sub(/.*SHADOW RAN: /, ""); print at ": " $0 }' "$out/stderr" | sort -u)
	if [ -n "$ran" ]; then
		echo "VIOLATION: billing ran objects the caller planted ($(wc -l <<<"$ran") distinct):"
		head -40 <<<"$ran" | while IFS= read -r line; do
			n=$(sed -nE 's/^call ([0-9]+):.*/\1/p' <<<"$line")
			echo "  $line${n:+  -- $(q -c "SELECT left(sql, 200) FROM gate.calls WHERE n = $n")}"
		done
		bad=1
	fi
	planted=$(psql -X -At -U "$role" -d "$db" -c "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
	echo "shadowing: $planted functions and operators' functions planted in public, types, casts and views in pg_temp"
fi
echo "$([ "$shadows" = 1 ] && echo shadowing || echo hostile input): $judged calls, $([ $bad -eq 0 ] && echo 'no violation' || echo 'FAILED')"
exit "$bad"
