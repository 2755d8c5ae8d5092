#!/usr/bin/env bash
# The README's one line schedules daily maintenance with pg_cron; this proves
# a scheduled job really runs it: an unpaid trial that ended 6 days ago is
# expired by the job (not by us) within about a minute.
set -euo pipefail
db=billing_cron   # cron.database_name in the test cluster
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

q -c "CREATE EXTENSION pg_cron" -c "CREATE EXTENSION billing"
sub=$(q -c "SELECT id FROM billing.start_trial('cron-user', 'pro_monthly', now() - interval '20 days')")
[ "$(q -c "SELECT status FROM billing.subscriptions WHERE id = $sub")" = trialing ]
# the line from the README, run every minute here instead of daily
q -c "SELECT cron.schedule('billing-maintenance', '* * * * *', 'CALL billing.run_maintenance_batches()')" >/dev/null

for _ in $(seq 1 80); do
	status=$(q -c "SELECT status FROM billing.subscriptions WHERE id = $sub")
	[ "$status" = expired ] && break
	sleep 1
done
echo "status after waiting: $status"
q -c "SELECT status, return_message FROM cron.job_run_details ORDER BY runid DESC LIMIT 3"
[ "$status" = expired ] || { echo "the scheduled job did not expire the trial"; exit 1; }
[ "$(q -c "SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded'")" -ge 1 ]
[ "$(q -c "SELECT p.code FROM billing.effective_plan('cron-user') p")" = free ]
q -c "SELECT cron.unschedule('billing-maintenance')" >/dev/null
echo "pg_cron ran billing maintenance"
