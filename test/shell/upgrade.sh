#!/usr/bin/env bash
# ALTER EXTENSION billing UPDATE from each release (0.1.0, 0.2.0) to the current
# version, on a database in use: attached tables, counted rows, usage not yet
# rolled up. Afterwards the counters are unchanged, the quotas behave as in a
# fresh install (AFTER triggers: ON CONFLICT counts only inserted rows), and
# the billing schema is the same as a fresh CREATE EXTENSION's, object for
# object (tables and columns in order, indexes, constraints, functions,
# triggers, privileges, what pg_dump saves).
#
# Run by test/run.sh with PGHOST/PGPORT/PGUSER set for the throwaway cluster.
set -uo pipefail

if [ -z "${FROM:-}" ]; then
	rc=0
	for release in 0.1.0 0.2.0; do
		echo "=== from $release"
		FROM=$release bash "$0" || rc=1
	done
	exit "$rc"
fi

old="billing_upgrade_old_$$"
new="billing_upgrade_new_$$"
tmp=$(mktemp -d /tmp/billing-upgrade.XXXXXX)
failed=0
psql_q() { # psql_q DB SQL...
	local db=$1
	shift
	psql -X -q -v ON_ERROR_STOP=1 -At -d "$db" "$@"
}
cleanup() {
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $old WITH (FORCE)" >/dev/null 2>&1
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $new WITH (FORCE)" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	failed=1
}

psql_q postgres -c "CREATE DATABASE $old" -c "CREATE DATABASE $new" || exit 1

app_schema() { # the application, attached
	cat <<'SQL'
CREATE TABLE users (id bigint PRIMARY KEY);
CREATE TABLE rooms (id bigint PRIMARY KEY, owner_id bigint REFERENCES users, deleted_at timestamptz);
CREATE TABLE participants (id bigserial PRIMARY KEY, room_id bigint REFERENCES rooms ON DELETE CASCADE,
						   person text, deleted_at timestamptz, UNIQUE (room_id, person));
INSERT INTO users SELECT g FROM generate_series(1, 5) g;
SELECT billing.attach_users('users', 'id');
SELECT billing.attach_room_quota('rooms', 'owner_id');
SELECT billing.attach_participant_quota('participants', 'room_id', 'rooms', 'owner_id');
SQL
}

echo "== $FROM in use"
{
	echo "CREATE EXTENSION billing VERSION '$FROM';"
	app_schema
	cat <<'SQL'
INSERT INTO rooms VALUES (1, 1, NULL), (2, 1, NULL), (3, 2, NULL), (4, 2, now());
INSERT INTO participants (room_id, person) SELECT 1, 'guest ' || g FROM generate_series(1, 49) g;
INSERT INTO participants (room_id, person) VALUES (3, 'ada'), (3, 'bob');
SQL
} | psql_q "$old" >/dev/null || { echo "FAIL: could not set up $FROM"; exit 1; }
[ "$(psql_q "$old" -c "SELECT extversion FROM pg_extension WHERE extname = 'billing'")" = "$FROM" ] || fail "not on $FROM"
counters="SELECT a.kind, q.key, q.owner_id, q.used, q.usage_pending, q.cap, q.usage_day FROM billing.quota_counters q
		   JOIN billing.attachments a ON a.id = q.attachment_id ORDER BY 1, 2"
psql_q "$old" -c "$counters" >"$tmp/counters.before"

# Before the update, this library's lifecycle calls and maintenance refuse
# with one clear error (55000, the hint names the update), not 42P01/42883.
for call in "SELECT billing.subscribe('upgrade_window', 'pro_monthly', now(), false)" \
	"SELECT * FROM billing.run_maintenance(now())"; do
	if psql_q "$old" -c "$call" >/dev/null 2>"$tmp/err"; then
		fail "before the update, '$call' worked"
	elif ! grep -q 'billing library 0.3.0 needs the extension updated' "$tmp/err" ||
		! grep -q 'ALTER EXTENSION billing UPDATE' "$tmp/err"; then
		fail "before the update, '$call' gave another error: $(cat "$tmp/err")"
	fi
done

echo "== ALTER EXTENSION billing UPDATE"
psql_q "$old" -c "ALTER EXTENSION billing UPDATE" || { echo "FAIL: the update failed"; exit 1; }
version=$(psql_q "$old" -c "SELECT extversion FROM pg_extension WHERE extname = 'billing'")
default=$(psql_q "$old" -c "SELECT default_version FROM pg_available_extensions WHERE name = 'billing'")
echo "   now at $version"
[ "$version" = "$default" ] || fail "updated to $version, not to the default version $default"

echo "== the counters came through unchanged"
psql_q "$old" -c "$counters" >"$tmp/counters.after"
diff "$tmp/counters.before" "$tmp/counters.after" || fail "counters changed"
[ -s "$tmp/counters.after" ] || fail "no counters at all"

echo "== quotas after the update"
out=$(psql_q "$old" <<'SQL' 2>&1
-- the same person again: ON CONFLICT inserts nothing and counts nothing
INSERT INTO participants (room_id, person) VALUES (1, 'guest 1') ON CONFLICT DO NOTHING;
INSERT INTO participants (room_id, person) VALUES (1, 'guest 50');      -- the 50th place
SELECT 'used=' || used FROM billing.quota_counters WHERE key = '1' AND attachment_id =
	(SELECT id FROM billing.attachments WHERE kind = 'participants');
INSERT INTO rooms VALUES (5, 1, NULL);                                   -- user 1's third room
SELECT 'rooms=' || used FROM billing.quota_counters WHERE key = '1' AND attachment_id =
	(SELECT id FROM billing.attachments WHERE kind = 'rooms');
SQL
)
grep -qx 'used=50' <<<"$out" || fail "participants counted wrongly after the update: $out"
grep -qx 'rooms=3' <<<"$out" || fail "rooms counted wrongly after the update: $out"
if psql_q "$old" -c "INSERT INTO rooms VALUES (6, 1, NULL)" 2>"$tmp/err"; then
	fail "a fourth room for a Free user was accepted after the update"
else
	grep -q 'quota "rooms" exceeded' "$tmp/err" || fail "unexpected error: $(cat "$tmp/err")"
fi
psql_q "$old" -c "SELECT billing.attach_participant_quota('participants', 'room_id', 'rooms', 'owner_id')" >/dev/null ||
	fail "attaching participants again failed after the update"

echo "== the schema is the same as a fresh install's"
{
	echo "CREATE EXTENSION billing;"
	app_schema
	echo "SELECT billing.attach_participant_quota('participants', 'room_id', 'rooms', 'owner_id');"
} | psql_q "$new" >/dev/null || { echo "FAIL: could not set up a fresh install"; exit 1; }
describe="
SELECT 'relation', c.relname, c.relkind::text, coalesce(c.reloptions::text, ''), coalesce(c.relacl::text, ''),
	   coalesce(obj_description(c.oid, 'pg_class'), '')
  FROM pg_class c WHERE c.relnamespace = 'billing'::regnamespace
UNION ALL
SELECT 'column', c.relname, a.attnum::text || ' ' || a.attname, format_type(a.atttypid, a.atttypmod),
	   a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), coalesce(co.collname, '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
 WHERE c.relnamespace = 'billing'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v')
UNION ALL
SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), '', '', ''
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'billing'::regnamespace
UNION ALL
SELECT 'constraint', co.conrelid::regclass::text, co.conname, pg_get_constraintdef(co.oid), '', ''
  FROM pg_constraint co WHERE co.connamespace = 'billing'::regnamespace
UNION ALL
SELECT 'function', p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)), coalesce(p.proacl::text, ''), '', ''
  FROM pg_proc p WHERE p.pronamespace = 'billing'::regnamespace AND p.prokind IN ('f', 'p')
UNION ALL
SELECT 'trigger', t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), '', ''
  FROM pg_trigger t WHERE NOT t.tgisinternal
UNION ALL
SELECT 'dumped with pg_dump', x::regclass::text, '', '', '', ''
  FROM pg_extension e, unnest(e.extconfig) x WHERE e.extname = 'billing'
UNION ALL
SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), '', '', '', ''
  FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
 WHERE e.extname = 'billing' AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
ORDER BY 1, 2, 3, 4"
psql_q "$old" -c "$describe" >"$tmp/schema.updated"
psql_q "$new" -c "$describe" >"$tmp/schema.fresh"
echo "   $(wc -l <"$tmp/schema.fresh") objects and attributes compared"
diff "$tmp/schema.fresh" "$tmp/schema.updated" >"$tmp/schema.diff" || {
	head -40 "$tmp/schema.diff"
	fail "the updated schema differs from a fresh install's"
}

[ "$failed" -eq 0 ] && echo "upgrade: ok"
exit "$failed"
