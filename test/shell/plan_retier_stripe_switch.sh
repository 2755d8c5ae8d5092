#!/usr/bin/env bash
# Attack (session 9 review 3, hostile tester): _plans_pristine freezes the
# code and tier of a plan "a subscription has used" by asking whether any
# billing.subscriptions row has that plan_id NOW. A Stripe price change
# (customer.subscription.updated with another price) rewrites plan_id of the
# same subscription row in place (src/glue/stripe.cpp), so the plan the
# subscription had before is then named only by the history. A billing_admin
# may then change that plan's tier, and every report of the dates it was
# used regroups it: review R7 again (a past report changes).
# Fixed (session 9, attack finding 3/5): _plans_pristine asks
# billing._plan_used, which reads the history too: the tier edit is refused
# (55000) and active_subscriptions of day 5 reads 'pro' before and after.
# Run by test/run.sh (SHELL_TESTS=plan_retier_stripe_switch), or on a
# scratch cluster (PGHOST/PGPORT set): bash test/shell/plan_retier_stripe_switch.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export STRIPE_FIXTURES="$REPO/../shared/stripe/fixtures.json"
export STRIPE_MONEY_DB="billing_plan_retier_$$"
export STRIPE_MONEY_HERE="$REPO"
[ -r "$STRIPE_FIXTURES" ] || { echo "fixtures not found at $STRIPE_FIXTURES" >&2; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $STRIPE_MONEY_DB"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $STRIPE_MONEY_DB" >/dev/null 2>&1 || true' EXIT
python3 - <<'PYTHON'
import os, sys
sys.path.insert(0, os.path.join(os.environ["STRIPE_MONEY_HERE"], "test", "shell", "lib"))
from stripe_money_lib import *  # noqa
psql(f"""CREATE EXTENSION billing;
UPDATE billing.subscription_plans SET stripe_price_id = '{PRICE}' WHERE code = 'pro_monthly';
INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days,
                                        limits, features, stripe_price_id)
VALUES ('ent_monthly_s', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 0, '{{}}', '{{}}', 'price_open3_ent');
SELECT billing.configure('stripe_webhook_secret', '{SECRET}');""")
s = subscription("sub_o4", "cus_o4", "active", T0, T0 + 31 * DAY, "o4")
check("Stripe's Pro subscription applied", ingest("o4_1", "customer.subscription.created", s, T0), "applied")
report = "SELECT string_agg(tier || ' ' || subscriptions, ', ' ORDER BY tier) FROM billing.active_subscriptions(to_timestamp(%d)) WHERE tier <> 'free'" % (T0 + 5 * DAY)
check("day 5 before: pro", psql(report), "pro 1")
s2 = subscription("sub_o4", "cus_o4", "active", T0, T0 + 31 * DAY, "o4")
s2["items"]["data"][0]["price"]["id"] = "price_open3_ent"
check("Stripe's switch to Enterprise applied", ingest("o4_2", "customer.subscription.updated", s2, T0 + 10 * DAY), "applied")
check("rows of the subscription on pro_monthly now",
      psql("SELECT count(*) FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id WHERE p.code = 'pro_monthly'"), "0")
check("history of pro_monthly kept",
      psql("SELECT count(*) > 0 FROM billing.subscription_history h JOIN billing.subscription_plans p ON p.id = h.plan_id WHERE p.code = 'pro_monthly'"), "t")
check("day 5 after the switch: pro", psql(report), "pro 1")
got = psql("""CREATE ROLE regress_o4_admin IN ROLE billing_admin; SET ROLE regress_o4_admin;
UPDATE billing.subscription_plans SET tier = 'enterprise' WHERE code = 'pro_monthly'; RESET ROLE;""")
check("the admin's tier edit of a plan used (refused, 55000)", "55000" in got or "cannot change" in got, True)
check("day 5 after the edit: still pro", psql(report), "pro 1")
psql("DROP ROLE regress_o4_admin")
finish()
PYTHON
