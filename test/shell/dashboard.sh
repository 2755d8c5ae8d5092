#!/usr/bin/env bash
# dashboards/billing.json is a Grafana dashboard for the PostgreSQL data
# source. Every panel's SQL, with the macros substituted as Grafana does
# ($__timeFrom() and $__timeTo() become quoted RFC 3339 times, $__interval a
# duration such as 1h or 7d), runs as billing_analyst against the demo story's
# database; time series come back as (time, metric, value); every panel shows
# something for at least one of the ranges.
#
# Run by test/run.sh with PGHOST/PGPORT/PGUSER set for the throwaway cluster.
set -uo pipefail
cd "$(dirname "$0")/../.."
dashboard=dashboards/billing.json
db="billing_dashboard_$$"
failed=0
fail() { echo "FAIL: $*"; failed=1; }
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1' EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

jq -e '.panels | length > 0' "$dashboard" >/dev/null || { echo "FAIL: $dashboard has no panels"; exit 1; }
psql -X -q -d postgres -c "CREATE DATABASE $db" || exit 1
echo "== the demo story"
psql -X -q -d "$db" -v ON_ERROR_STOP=1 -f demo/schema.sql >/dev/null || { echo "FAIL: demo schema"; exit 1; }
for f in demo/story.sql demo/story_quota.sql demo/story_lifecycle.sql demo/story_reports.sql; do
	psql -X -q -d "$db" -f "$f" >/dev/null 2>&1  # errors are part of the story
done
[ "$(q -c "SELECT count(*) FROM billing.payments")" -gt 0 ] || fail "the demo story recorded no payment"

day0=$(q -c "SELECT to_char(min(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM billing.subscriptions")
at() { q -c "SELECT to_char(('$day0'::timestamptz + interval '$1') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"; }
ranges=("$(at '-1 day') $(at '60 days') 1h" "$(at '-1 day') $(at '60 days') 1d" "$(at '20 days') $(at '50 days') 7d"
		"$(at '-400 days') $(at '400 days') 30d")

panels=$(jq -r '.panels | length' "$dashboard")
echo "== $panels panels"
for i in $(seq 0 $((panels - 1))); do
	title=$(jq -r ".panels[$i].title" "$dashboard")
	format=$(jq -r ".panels[$i].targets[0].format" "$dashboard")
	sql=$(jq -r ".panels[$i].targets[0].rawSql" "$dashboard")
	[ "$(jq -r ".panels[$i].datasource.type" "$dashboard")" = grafana-postgresql-datasource ] ||
		fail "$title: not the PostgreSQL data source"
	best=0
	for r in "${ranges[@]}"; do
		read -r from to interval <<<"$r"
		query=${sql//\$__timeFrom()/\'$from\'}
		query=${query//\$__timeTo()/\'$to\'}
		query=${query//\$__interval/$interval}
		if [ "$format" = time_series ]; then
			check="SELECT count(*) FROM (SELECT \"time\", metric, value FROM ($query) p
					WHERE pg_typeof(\"time\") = 'timestamptz'::regtype AND \"time\" IS NOT NULL) c"
		else
			check="SELECT count(*) FROM ($query) p"
		fi
		if ! rows=$(q -c "SET ROLE billing_analyst" -c "SET TimeZone = 'America/New_York'" -c "$check" 2>&1); then
			fail "$title ($from .. $to, $interval): $rows"
			continue
		fi
		[ "$rows" -gt "$best" ] && best=$rows
	done
	echo "   $title ($format): up to $best rows"
	[ "$best" -gt 0 ] || fail "$title shows nothing for any range"
done
[ "$failed" -eq 0 ] && echo "every panel of $dashboard runs on the demo data"
exit "$failed"
