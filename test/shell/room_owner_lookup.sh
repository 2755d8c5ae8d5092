#!/usr/bin/env bash
# A participant's first insert into a room with no counter yet looks the
# room's owner up in the rooms table, as the inserting user. On a rooms table
# of 1,000,000 rows that lookup must use the rooms' primary key (the key is
# given in the key column's own type, compared with the type's own equality
# operator). Two ways, both checked: on a plain table the trigger reads the
# rooms' unique key index itself, without a statement (session 10: the
# transaction's own statistics show one index scan of rooms and no
# sequential scan); with row-level security on the rooms it runs the SELECT,
# whose plan, printed by auto_explain, uses rooms_pkey and has no Seq Scan.
set -uo pipefail

db="billing_lookup_$$"
psql_q() { # psql_q DB SQL...
	local d=$1
	shift
	psql -X -q -v ON_ERROR_STOP=1 -At -d "$d" "$@"
}
cleanup() { psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; }
trap cleanup EXIT

psql_q postgres -c "CREATE DATABASE $db" || exit 1
psql_q "$db" >/dev/null <<'SQL' || { echo "FAIL: could not set up"; exit 1; }
CREATE EXTENSION billing;
CREATE UNLOGGED TABLE rooms (id bigint NOT NULL, owner_id bigint NOT NULL);   -- unlogged: a faster load
INSERT INTO rooms SELECT g, g % 1000 FROM generate_series(1, 1000000) g;
ALTER TABLE rooms ADD PRIMARY KEY (id);
ANALYZE rooms;
CREATE TABLE participants (id bigserial PRIMARY KEY, room_id bigint NOT NULL, person text);
SELECT billing.attach_participant_quota('participants', 'room_id', 'rooms', 'owner_id');
CREATE ROLE regress_lookup_app;
GRANT SELECT ON rooms TO regress_lookup_app;
GRANT INSERT ON participants TO regress_lookup_app;
GRANT USAGE ON SEQUENCE participants_id_seq TO regress_lookup_app;
SQL

out=$(psql -X -At -v ON_ERROR_STOP=1 -d "$db" 2>&1 <<'SQL'
BEGIN;
SET LOCAL ROLE regress_lookup_app;
INSERT INTO participants (room_id, person) VALUES (777777, 'ada');
RESET ROLE;
SELECT 'direct: seq_scan=' || seq_scan || ' idx_scan=' || idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'rooms';
COMMIT;
ALTER TABLE rooms ENABLE ROW LEVEL SECURITY;
CREATE POLICY rooms_all ON rooms USING (true);
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;
SET ROLE regress_lookup_app;
INSERT INTO participants (room_id, person) VALUES (888888, 'bob');
RESET ROLE;
SELECT 'owner=' || owner_id FROM billing.quota_counters WHERE key IN ('777777', '888888') ORDER BY key;
SQL
)
psql_q postgres -c "DROP DATABASE $db WITH (FORCE)" -c "DROP ROLE regress_lookup_app" >/dev/null 2>&1

failed=0
grep '^direct:' <<<"$out" | sed 's/^/   /'
grep -q '^direct: seq_scan=0 idx_scan=1$' <<<"$out" || { echo "FAIL: the direct owner read did not take one index scan of rooms and no sequential scan"; echo "$out" | tail -20; failed=1; }
lookup=$(grep -A3 'Query Text: SELECT r.owner_id FROM public.rooms r' <<<"$out")
echo "$lookup" | sed 's/^/   /'
[ -n "$lookup" ] || { echo "FAIL: the owner lookup statement was not seen (row-level security on rooms)"; echo "$out" | tail -20; failed=1; }
grep -q 'Seq Scan on rooms' <<<"$out" && { echo "FAIL: the owner lookup scans the rooms table"; failed=1; }
grep -qE 'Index (Only )?Scan using rooms_pkey' <<<"$lookup" || { echo "FAIL: the owner lookup does not use rooms_pkey"; failed=1; }
{ grep -qx 'owner=777' <<<"$out" && grep -qx 'owner=888' <<<"$out"; } || { echo "FAIL: the rooms' owners were not recorded"; echo "$out" | tail -5; failed=1; }
[ "$failed" -eq 0 ] && echo "room owner lookup: ok"
exit "$failed"
