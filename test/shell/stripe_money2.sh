#!/usr/bin/env bash
# Second money review of session 8 (test/review/MONEY_FINDINGS2.md): today's
# Stripe fixes (23520ab, 8d8d8bc, e4688da) against today's local fixes (T1,
# U1). Each case with its hand arithmetic; the checks hold the CORRECT outcome.
#
# X2 (Medium) path dependence, T1 x adoption: pro_monthly 7999 paid on T0
#    (1 Jan 2030: 2999 invoice, 5000 credit), canceled now on 2 Jan, Pro trial
#    3-17 Jan. Credit 5000 covers the first period, so at 17 Jan the trial
#    converts (T1: 2999 invoice paid from credit, credit 2001, period
#    17 Jan - 17 Feb). Stripe's subscription for the same plan (adoption)
#    arrives on 21 Jan. x2a: the Stripe event before any maintenance; x2b:
#    run_maintenance(21 Jan) first. Whatever rule adoption applies to the
#    converted period, both orders must end the same (S6c: what time made due
#    comes first). Today x2a skips the trial end (no conversion, the trial
#    adopted as is, credit 5000, Pro 17-21 Jan unpaid) while x2b converts
#    (credit 2001): 2999 of credit apart.
# X1 (Medium) credit for time already used: pro_yearly 28800 paid on T0,
#    change_plan to enterprise_yearly on T0 + 1 d (credit line 28800 x 364 /
#    365 = 28721.1 -> 28721, invoice 70905 open, never paid), Stripe replaces it
#    (pro_monthly) on T0 + 10 d. The replacement credits unused paid time
#    (change_plan's rule, S6): at T0 + 10 d, 355 of 365 days: 28800 x 355 /
#    365 = 28010.96 -> 28011. Today 28721: the void gives back the credit
#    line computed at the upgrade, so the 9 days the customer spent on
#    Enterprise (never paid) are credited as unused Pro time too.
# Y2 (High) a local payment converts a Stripe-managed trial (S4's QB010 vs
#    T1's conversion): pro_monthly 7999 paid on T0 (credit 5000), canceled
#    2 Jan; Stripe's trialing subscription sub_y2 3-17 Jan for the user;
#    billing.record_payment(it, 100) on 6 Jan (accepted on a Stripe-managed
#    subscription: "money that moved", S4). Stripe decides when its trial
#    ends and bills the first period itself, so billing must not: expected
#    the 100 held as credit (5100), still trialing until 17 Jan, no billing
#    invoice on sub_y2 (or the payment refused QB010). Today: billing's own
#    subscription_create invoice 2999 (no stripe_invoice_id) paid from credit,
#    trial ended 6 Jan, active, credit 5100 - 2999 = 2101; Stripe's first
#    invoice in_y2 (2999, 17 Jan) is then paid too: the first month charged
#    twice (17 Jan - 6 Feb covered by both).
# X3 (Medium) e4688da's rule (a Stripe replacement ends billing's
#    subscription no earlier than its latest recorded change) makes the two
#    overlap: pro_yearly 28800 paid on T0, 100 more paid on T0 + 10 d (to
#    credit), Stripe's pro_monthly subscription starting T0 + 5 d delivered on
#    T0 + 12 d. The local one ends T0 + 10 d, Stripe's starts T0 + 5 d: for
#    five days the user has two current subscriptions. mrr(T0 + 7 d) counted
#    x3's 2400 (28800 / 12) as 1 subscription; expected one subscription for the
#    user (2400 or, by S9's rule that Stripe's dates win, 2999), never both.
#    Today both (+2999 and one subscription more; 5399 for 2 on a book of x3 alone). (The customer also pays twice for those five days:
#    Stripe's month from T0 + 5 d, billing's credit for unused time only from
#    T0 + 10 d, 28800 x 355 / 365 = 28011, + 100 = 28111.)
# Y3 (Medium) a refund reopens billing's own upgrade invoice on a subscription
#    Stripe has adopted (R1/M16's reopen vs S2's "adoption voids billing's own
#    open invoices"): pro_yearly 28800 paid on T0; 1 Feb change_plan to an
#    Enterprise monthly 9999 plan (Stripe price price_ent_y3): credit line
#    28800 x 334 / 365 = 26354, total -16355, paid, credit 16355; Stripe's
#    subscription for that price adopts it 10 minutes later; 28800 refunded on
#    6 Feb (credit 16355 taken back). Expected: nothing of billing's open on
#    the Stripe-managed subscription (Stripe bills it; billing neither duns
#    nor voids a Stripe-managed subscription's invoices): the upgrade invoice
#    void (as R1 does when nothing can settle it), credit 0. Today: open,
#    9999 due 9 Feb, still open after maintenance 40 days later.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export STRIPE_FIXTURES="$REPO/../shared/stripe/fixtures.json"
export STRIPE_MONEY_DB="billing_stripe_money_$$"
export STRIPE_MONEY_HERE="$REPO"
[ -r "$STRIPE_FIXTURES" ] || { echo "fixtures not found at $STRIPE_FIXTURES" >&2; exit 1; }
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $STRIPE_MONEY_DB"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $STRIPE_MONEY_DB" >/dev/null 2>&1 || true' EXIT

python3 - <<'PYTHON'
import os, sys
sys.path.insert(0, os.path.join(os.environ["STRIPE_MONEY_HERE"], "test", "shell", "lib"))
from stripe_money_lib import *  # noqa: F401,F403 (FIX, T0, DAY, PRICE, SECRET, psql, check, ingest, ...)
import stripe_money_lib

psql(f"""CREATE EXTENSION billing;
UPDATE billing.subscription_plans SET stripe_price_id = '{PRICE}' WHERE code = 'pro_monthly';
SELECT billing.configure('stripe_webhook_secret', '{SECRET}');""")

psql(f"""CREATE EXTENSION billing;
UPDATE billing.subscription_plans SET stripe_price_id = '{PRICE}' WHERE code = 'pro_monthly';
SELECT billing.configure('stripe_webhook_secret', '{SECRET}');""")


def current(user):
    return f"(SELECT id FROM billing.subscriptions WHERE user_id = '{user}' AND ended_at IS NULL)"


# X2
got = {}
for u, maintenance_first in (("x2a", False), ("x2b", True)):
    psql(f"SELECT billing.subscribe('{u}', 'pro_monthly', to_timestamp({T0}), false)")
    psql(f"SELECT billing.record_payment({current(u)}, 7999, 'usd', true, to_timestamp({T0}))")
    psql(f"SELECT billing.cancel({current(u)}, false, to_timestamp({T0 + DAY}))")
    psql(f"SELECT billing.start_trial('{u}', 'pro_monthly', to_timestamp({T0 + 2 * DAY}))")
    if maintenance_first:
        psql(f"SELECT count(*) FROM billing.run_maintenance(to_timestamp({T0 + 20 * DAY}))")
    check(f"X2 {u} Stripe's subscription applied",
          ingest(f"{u}_1", "customer.subscription.created",
                 subscription(f"sub_{u}", f"cus_{u}", "active", T0 + 20 * DAY, T0 + 51 * DAY, u), T0 + 20 * DAY), "applied")
    check(f"X2 {u} invariants", invariants(u), "")
    # the history of the catch-up and of the adoption dated in 2030 (by the events), never at the real time
    check(f"X2 {u} history dated by the events", psql(f"""SELECT count(*) FROM billing.subscription_history h
                 JOIN billing.subscriptions s ON s.id = h.subscription_id
                WHERE s.user_id = '{u}' AND h.valid_from < '2029-01-01'"""), "0")
    got[u] = (psql(f"SELECT billing.credit_balance('{u}')"),
              psql(f"""SELECT string_agg(billing_reason || ' ' || status || ' ' || total_cents || ' ' || credit_applied_cents
                                         || ' ' || period_start::date, ', ' ORDER BY id)
                         FROM billing.invoices WHERE user_id = '{u}'"""))
check("X2 the trial was converted at its end (T1) before the adoption, in both orders",
      [g[1] for g in got.values()],
      ["subscription_create paid 2999 0 2030-01-01, subscription_create paid 2999 2999 2030-01-17"] * 2)
check("X2 the same credit whichever came first, maintenance or Stripe's event", got["x2a"][0], got["x2b"][0])

# X1
psql(f"SELECT billing.subscribe('x1', 'pro_yearly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment({current('x1')}, 28800, 'usd', true, to_timestamp({T0}))")
psql(f"SELECT billing.change_plan({current('x1')}, 'enterprise_yearly', to_timestamp({T0 + DAY}))")
check("X1 the upgrade invoice open", psql("SELECT status || ' ' || total_cents FROM billing.invoices WHERE user_id = 'x1' ORDER BY id DESC LIMIT 1"),
      "open 70905")
check("X1 Stripe's subscription applied",
      ingest("x1_1", "customer.subscription.created",
             subscription("sub_x1", "cus_x1", "active", T0 + 10 * DAY, T0 + 41 * DAY, "x1"), T0 + 10 * DAY), "applied")
check("X1 the upgrade invoice void", psql("SELECT status FROM billing.invoices WHERE user_id = 'x1' ORDER BY id DESC LIMIT 1"), "void")
check("X1 credit for the Pro time unused at the replacement: 28800 x 355 / 365 -> 28011",
      psql("SELECT billing.credit_balance('x1')"), "28011")
check("X1 invariants", invariants("x1"), "")

# Y2
u = "y2"
psql(f"SELECT billing.subscribe('{u}', 'pro_monthly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment({current(u)}, 7999, 'usd', true, to_timestamp({T0}))")
psql(f"SELECT billing.cancel({current(u)}, false, to_timestamp({T0 + DAY}))")
trial = subscription("sub_y2", "cus_y2", "trialing", T0 + 2 * DAY, T0 + 16 * DAY, u)
trial.update(trial_start=T0 + 2 * DAY, trial_end=T0 + 16 * DAY)
check("Y2 Stripe's trial applied", ingest("y2_1", "customer.subscription.created", trial, T0 + 2 * DAY), "applied")
got = psql(f"SELECT status FROM billing.record_payment({current(u)}, 100, 'usd', true, to_timestamp({T0 + 5 * DAY}))")
if "QB010" not in got:
    check("Y2 the Stripe-managed trial goes on after a local payment",
          psql(f"SELECT status || ' ' || trial_end::date FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_y2'"),
          "trialing 2030-01-17")
    check("Y2 billing issued no invoice of its own on the Stripe-managed subscription",
          psql("""SELECT count(*) FROM billing.invoices i JOIN billing.subscriptions s ON s.id = i.subscription_id
                   WHERE s.stripe_subscription_id = 'sub_y2' AND i.stripe_invoice_id IS NULL"""), "0")
    check("Y2 the payment held as credit: 5000 + 100", psql(f"SELECT billing.credit_balance('{u}')"), "5100")
active = subscription("sub_y2", "cus_y2", "active", T0 + 16 * DAY, T0 + 47 * DAY, u)
active.update(trial_start=T0 + 2 * DAY, trial_end=T0 + 16 * DAY)
ingest("y2_2", "customer.subscription.updated", active, T0 + 16 * DAY)
ingest("y2_3", "invoice.paid", invoice("in_y2", "sub_y2", "cus_y2", 2999, T0 + 16 * DAY, T0 + 47 * DAY), T0 + 16 * DAY + 60)
check("Y2 one paid first-period invoice on the Stripe-managed subscription (Stripe's)",
      psql("""SELECT string_agg(i.billing_reason || ' ' || i.total_cents || ' ' || COALESCE(i.stripe_invoice_id, 'billing'), ', ' ORDER BY i.id)
                FROM billing.invoices i JOIN billing.subscriptions s ON s.id = i.subscription_id
               WHERE s.stripe_subscription_id = 'sub_y2' AND i.status = 'paid'"""),
      "subscription_create 2999 in_y2")

# X3
u = "x3"
psql(f"SELECT billing.subscribe('{u}', 'pro_yearly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment({current(u)}, 28800, 'usd', true, to_timestamp({T0}))")
psql(f"SELECT billing.record_payment({current(u)}, 100, 'usd', true, to_timestamp({T0 + 10 * DAY}))")
before = psql(f"SELECT subscriptions FROM billing.mrr(to_timestamp({T0 + 7 * DAY}))")  # x3's pro_yearly among them
check("X3 Stripe's subscription applied",
      ingest("x3_1", "customer.subscription.created",
             subscription("sub_x3", "cus_x3", "active", T0 + 5 * DAY, T0 + 36 * DAY, u), T0 + 12 * DAY), "applied")
ingest("x3_2", "invoice.paid", invoice("in_x3", "sub_x3", "cus_x3", 2999, T0 + 5 * DAY, T0 + 36 * DAY), T0 + 12 * DAY + 60)
check("X3 no two subscriptions of the user current at once",
      psql(f"""SELECT count(*) FROM billing.subscriptions a JOIN billing.subscriptions b
                 ON a.user_id = b.user_id AND a.id < b.id
                AND tstzrange(a.started_at, a.ended_at) && tstzrange(b.started_at, b.ended_at)
               WHERE a.user_id = '{u}'"""), "0")
check("X3 mrr of T0 + 7 d counts one subscription for the user (as many subscriptions as before the event)",
      psql(f"SELECT subscriptions FROM billing.mrr(to_timestamp({T0 + 7 * DAY}))"), before)
check("X3 invariants", invariants(u), "")

# Y3
u = "y3"
FEB1 = T0 + 31 * DAY
psql("""INSERT INTO billing.subscription_plans (code, name, tier, billing_interval, price_cents, currency, trial_days,
                                               limits, features, stripe_price_id)
        VALUES ('ent_monthly_y3', 'Enterprise (monthly)', 'enterprise', 'monthly', 9999, 'usd', 30, '{}', '{}', 'price_ent_y3')""")
psql(f"SELECT billing.subscribe('{u}', 'pro_yearly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment({current(u)}, 28800, 'usd', true, to_timestamp({T0}))")
psql(f"SELECT billing.change_plan({current(u)}, 'ent_monthly_y3', to_timestamp({FEB1}))")
check("Y3 the upgrade paid by its credit line", psql(f"SELECT string_agg(status || ' ' || total_cents, ', ' ORDER BY id) FROM billing.invoices WHERE user_id = '{u}'"),
      "paid 28800, paid -16355")
adopted = subscription("sub_y3", "cus_y3", "active", FEB1 + 600, FEB1 + 600 + 28 * DAY, u)
adopted["items"]["data"][0]["price"]["id"] = "price_ent_y3"
check("Y3 Stripe's subscription applied", ingest("y3_1", "customer.subscription.created", adopted, FEB1 + 600), "applied")
check("Y3 adopted", psql(f"SELECT stripe_subscription_id FROM billing.subscriptions WHERE user_id = '{u}' AND ended_at IS NULL"), "sub_y3")
psql(f"SELECT billing.refund((SELECT id FROM billing.payments WHERE user_id = '{u}'), 28800, to_timestamp({FEB1 + 5 * DAY}))")
psql(f"SELECT count(*) FROM billing.run_maintenance(to_timestamp({FEB1 + 40 * DAY}))")
check("Y3 no billing invoice left open on the Stripe-managed subscription",
      psql(f"""SELECT count(*) FROM billing.invoices i JOIN billing.subscriptions s ON s.id = i.subscription_id
                WHERE s.stripe_subscription_id = 'sub_y3' AND i.stripe_invoice_id IS NULL AND i.status = 'open'"""), "0")
check("Y3 credit 0 (nothing paid net)", psql(f"SELECT billing.credit_balance('{u}')"), "0")
check("Y3 invariants", invariants(u), "")

stripe_money_lib.finish()
PYTHON
