#!/usr/bin/env bash
# A Stripe subscription meeting billing's own money (session 8 money review,
# test/review/MONEY_FINDINGS.md S1-S9, from test/review/stripe_money.py):
# every case with its expected outcome and hand arithmetic.
#
# S1 a Stripe subscription replaces a local pro_yearly (28800) of which 10000
#    is paid: the local one ends plan_changed, its invoice void, the 10000 back
#    as credit (void_to_credit); no credit for time (the period was not paid).
# S2 Stripe adopts a local pro_monthly (2999 open, 1000 paid) of the same plan,
#    its period 10 minutes later: billing's own invoice void, 1000 credit, none open.
# S3 as S2 with Stripe's period starting at billing's: Stripe's invoice does not
#    take billing's voided row (kept as a manual invoice beside it); pi_st3 on
#    Stripe's invoice; the 1000 credit; the model's invariants hold.
# S4 billing's lifecycle calls on a Stripe-managed subscription: QB010.
# S5 the refund (1000 of 2999) is recorded against the invoice in any order.
# S6 Stripe replaces a paid pro_yearly on 1 Feb 2030: 28800 x 334 / 365 =
#    26353.97 -> 26354 credit, as change_plan's credit line.
# S7 invoice.paid, charge.refunded, payment_intent.succeeded: one 2999 payment,
#    one -1000 refund, net 1999.
# S8 all 24 orders of invoice.paid / payment_intent.succeeded / charge.succeeded
#    / charge.refunded: 2999, -1000, refund_of_paid_invoice 1000, invariants hold.
# S9 a late customer.subscription.deleted (created T0+5d, delivered T0+20d)
#    corrects mrr(T0+10d) by -2999 (README: which promise gives).
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

# S1
local_start("st1", "pro_yearly", 10000)
check("S1 event", ingest("evt_st1_1", "customer.subscription.created",
                         subscription("sub_st1", "cus_st1", "active", T0 + 600, T0 + 600 + 31 * DAY, "st1"), T0 + 600),
      "applied")
check("S1 local pro_yearly ended as a plan change",
      psql("SELECT status || ' ' || end_reason FROM billing.subscriptions WHERE user_id = 'st1' AND stripe_subscription_id IS NULL AND price_cents = 28800"),
      "canceled plan_changed")
check("S1 its invoice is void", psql("SELECT status FROM billing.invoices WHERE user_id = 'st1'"), "void")
check("S1 the 10000 paid toward it is credit", psql("SELECT billing.credit_balance('st1')"), "10000")
check("S1 invariants", invariants("st1"), "")

# S2
local_start("st2", "pro_monthly", 1000)
ingest("evt_st2_1", "customer.subscription.created",
       subscription("sub_st2", "cus_st2", "active", T0 + 600, T0 + 600 + 31 * DAY, "st2"), T0 + 600)
ingest("evt_st2_2", "invoice.paid", invoice("in_st2", "sub_st2", "cus_st2", 2999, T0 + 600, T0 + 600 + 31 * DAY), T0 + 660)
ingest("evt_st2_3", "payment_intent.succeeded", payment_intent("pi_st2", "cus_st2", 2999, T0 + 661), T0 + 661)
check("S2 adopted", psql("SELECT count(*) || ' ' || min(stripe_subscription_id) FROM billing.subscriptions WHERE user_id = 'st2' AND ended_at IS NULL"),
      "1 sub_st2")
check("S2 no invoice of st2 left open (Stripe was paid for the month)",
      psql("SELECT count(*) FROM billing.invoices WHERE user_id = 'st2' AND status = 'open'"), "0")
check("S2 the local 1000 is credit", psql("SELECT billing.credit_balance('st2')"), "1000")
check("S2 invariants", invariants("st2"), "")

# S3
psql(f"SELECT billing.subscribe('st3', 'pro_monthly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'st3' AND ended_at IS NULL), 1000, 'usd', true, to_timestamp({T0 + 60}))")
ingest("evt_st3_1", "customer.subscription.created",
       subscription("sub_st3", "cus_st3", "active", T0, T0 + 31 * DAY, "st3"), T0 + 600)
ingest("evt_st3_2", "invoice.paid", invoice("in_st3", "sub_st3", "cus_st3", 2999, T0, T0 + 31 * DAY), T0 + 660)
ingest("evt_st3_3", "payment_intent.succeeded", payment_intent("pi_st3", "cus_st3", 2999, T0 + 661), T0 + 661)
check("S3 the Stripe payment is on the invoice",
      psql("SELECT invoice_id IS NOT NULL FROM billing.payments WHERE external_id = 'pi_st3'"), "t")
check("S3 the local 1000 is credit", psql("SELECT billing.credit_balance('st3')"), "1000")
check("S3 invariants", invariants("st3"), "")

# S3b a fully paid local pro_monthly (2999) adopted, Stripe's period starting at
# billing's: billing's paid invoice keeps its payment, Stripe's invoice is kept
# beside it (manual) with pi_f1 on it; every payment placed, credit 0 (the
# customer paid both; refunding one is the application's call).
local_start("st3b", "pro_monthly", 2999)
ingest("evt_st3b_1", "customer.subscription.created", subscription("sub_st3b", "cus_st3b", "active", T0, T0 + 31 * DAY, "st3b"), T0 + 600)
ingest("evt_st3b_2", "invoice.paid", invoice("in_st3b", "sub_st3b", "cus_st3b", 2999, T0, T0 + 31 * DAY), T0 + 660)
ingest("evt_st3b_3", "payment_intent.succeeded", payment_intent("pi_st3b", "cus_st3b", 2999, T0 + 661), T0 + 661)
check("S3b billing's paid invoice is not taken; Stripe's beside it with its payment",
      psql("""SELECT string_agg(i.status || ' ' || i.billing_reason || ' ' || COALESCE(i.stripe_invoice_id, '-') || ' '
                                || (SELECT string_agg(COALESCE(p.external_id, 'local') || ' ' || p.amount_cents, ',') FROM billing.payments p WHERE p.invoice_id = i.id),
                                ', ' ORDER BY i.id)
                FROM billing.invoices i WHERE i.user_id = 'st3b'"""),
      "paid subscription_create - local 2999, paid manual in_st3b pi_st3b 2999")
check("S3b invariants", invariants("st3b"), "")

# S4
M = 31 * DAY
psql(f"SELECT billing._start_free('st4', to_timestamp({T0 - DAY}))")
ingest("evt_st4_1", "customer.subscription.created", subscription("sub_st4", "cus_st4", "active", T0, T0 + M, "st4"), T0)
ingest("evt_st4_2", "invoice.paid", invoice("in_st4", "sub_st4", "cus_st4", 2999, T0, T0 + M), T0 + 60)
ingest("evt_st4_3", "payment_intent.succeeded", payment_intent("pi_st4", "cus_st4", 2999, T0 + 61), T0 + 61)
got = psql(f"""SELECT 'changed' FROM billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = 'st4'
               AND ended_at IS NULL), 'pro_yearly', to_timestamp({T0 + 10 * DAY}))""")
check("S4 a local change_plan on a Stripe-managed subscription is refused", "ERROR" in got, True)
check("S4 the refusal names Stripe", "managed by Stripe" in got, True)
for call in ("billing.cancel({id}, true, to_timestamp({t}))", "billing.cancel({id}, false, to_timestamp({t}))",
             "billing.pause({id}, to_timestamp({t}))", "billing.subscribe('st4', 'pro_yearly', to_timestamp({t}), false)"):
    sql_call = call.format(id="(SELECT id FROM billing.subscriptions WHERE user_id = 'st4' AND ended_at IS NULL)",
                           t=T0 + 10 * DAY)
    check(f"S4 {call.split(', to_timestamp')[0].split(', (SELECT')[0]} on a Stripe-managed subscription is QB010",
          "QB010" in psql("\\set VERBOSITY verbose\nSELECT 1 FROM " + sql_call), True)
check("S4 a payment is still recorded on it (money that moved)",
      psql(f"""SELECT 'ok' FROM billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'st4'
               AND ended_at IS NULL), 2999, 'usd', true, to_timestamp({T0 + 10 * DAY}), 'pi_st4')"""), "ok")
check("S4 the Stripe subscription is still current",
      psql("SELECT ended_at IS NULL FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_st4'"), "t")

# S5
def charge(ch_id, pi_id, customer, amount, refunded, created):
    c = copy.deepcopy(FIX["charge"])
    c.update(id=ch_id, payment_intent=pi_id, customer=customer, amount=amount, amount_captured=amount,
             amount_refunded=refunded, refunded=refunded == amount, captured=True, created=created)
    return c


for u, seq in (("o1", ["inv", "pi", "ref"]), ("o2", ["ref", "inv", "pi"]), ("o3", ["pi", "ref", "inv"])):
    psql(f"SELECT billing._start_free('{u}', to_timestamp({T0 - DAY}))")
    ingest(f"{u}_1", "customer.subscription.created", subscription(f"sub_{u}", f"cus_{u}", "active", T0, T0 + M, u), T0)
    events = {"inv": (f"{u}_2", "invoice.paid", invoice(f"in_{u}", f"sub_{u}", f"cus_{u}", 2999, T0, T0 + M), T0 + 60),
              "pi": (f"{u}_3", "payment_intent.succeeded", payment_intent(f"pi_{u}", f"cus_{u}", 2999, T0 + 61), T0 + 61),
              "ref": (f"{u}_4", "charge.refunded", charge(f"ch_{u}", f"pi_{u}", f"cus_{u}", 2999, 1000, T0 + 62), T0 + 3600)}
    for k in seq:
        ingest(*events[k])
    check(f"S5 {'/'.join(seq)}: the refund is recorded against the invoice",
          psql(f"""SELECT string_agg(e.kind || ' ' || e.amount_cents, ',') FROM billing.ledger_entries e
                   JOIN billing.payments r ON r.id = e.payment_id WHERE r.user_id = '{u}' AND r.refund_of IS NOT NULL"""),
          "refund_of_paid_invoice 1000")

# S6
psql(f"SELECT billing.subscribe('st6', 'pro_yearly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'st6' AND ended_at IS NULL), 28800, 'usd', true, to_timestamp({T0}))")
FEB1 = T0 + 31 * DAY
ingest("evt_st6_1", "customer.subscription.created", subscription("sub_st6", "cus_st6", "active", FEB1, FEB1 + 28 * DAY, "st6"), FEB1)
check("S6 the local pro_yearly ended", psql("SELECT end_reason FROM billing.subscriptions WHERE user_id = 'st6' AND price_cents = 28800"),
      "plan_changed")
check("S6 its unused paid time is credit", psql("SELECT billing.credit_balance('st6')"), "26354")

# S6b a paused pro_yearly replaced: paid 28800 on T0, paused on day 10, Stripe
# on day 20: the paused time is not billed (change_plan's ProratedPeriodStart),
# so 28800 x (365 - 20) / (365 - 10) = 27988.7 -> 27989.
psql(f"SELECT billing.subscribe('st6b', 'pro_yearly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'st6b' AND ended_at IS NULL), 28800, 'usd', true, to_timestamp({T0}))")
psql(f"SELECT billing.pause((SELECT id FROM billing.subscriptions WHERE user_id = 'st6b' AND ended_at IS NULL), to_timestamp({T0 + 10 * DAY}))")
ingest("evt_st6b_1", "customer.subscription.created", subscription("sub_st6b", "cus_st6b", "active", T0 + 20 * DAY, T0 + 51 * DAY, "st6b"), T0 + 20 * DAY)
check("S6b a paused subscription's unused paid time, less the paused time, is credit", psql("SELECT billing.credit_balance('st6b')"), "27989")
check("S6b invariants", invariants("st6b"), "")
# S6c what time made due comes first: pro_yearly paid on T0, Stripe on day 400;
# the renewal of 1 Jan 2031 (28800, due 4 Jan) went unpaid, the grace ended
# 18 Jan (expired, Free), so Stripe replaces Free: the renewal void, credit 0.
psql(f"SELECT billing.subscribe('st6c', 'pro_yearly', to_timestamp({T0}), false)")
psql(f"SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'st6c' AND ended_at IS NULL), 28800, 'usd', true, to_timestamp({T0}))")
ingest("evt_st6c_1", "customer.subscription.created", subscription("sub_st6c", "cus_st6c", "active", T0 + 400 * DAY, T0 + 431 * DAY, "st6c"), T0 + 400 * DAY)
check("S6c caught up, then replaced",
      psql("SELECT string_agg(s.status || ' ' || COALESCE(s.end_reason, '-') || ' ' || COALESCE(s.ended_at::date::text, '-'), ', ' ORDER BY s.id) FROM billing.subscriptions s WHERE s.user_id = 'st6c'"),
      "expired payment_failed 2031-01-18, canceled plan_changed 2031-02-05, active - -")
check("S6c the unpaid renewal void, credit 0",
      psql("SELECT string_agg(status || ' ' || total_cents, ', ' ORDER BY id) || ' / ' || billing.credit_balance('st6c') FROM billing.invoices WHERE user_id = 'st6c'"),
      "paid 28800, void 28800 / 0")
check("S6c invariants", invariants("st6c"), "")

# S7
u = "o7"
psql(f"SELECT billing._start_free('{u}', to_timestamp({T0 - DAY}))")
ingest(f"{u}_1", "customer.subscription.created", subscription(f"sub_{u}", f"cus_{u}", "active", T0, T0 + M, u), T0)
ingest(f"{u}_2", "invoice.paid", invoice(f"in_{u}", f"sub_{u}", f"cus_{u}", 2999, T0, T0 + M), T0 + 600)
ingest(f"{u}_3", "charge.refunded", charge(f"ch_{u}", f"pi_{u}", f"cus_{u}", 2999, 1000, T0 + 62), T0 + 100)
ingest(f"{u}_4", "payment_intent.succeeded", payment_intent(f"pi_{u}", f"cus_{u}", 2999, T0 + 700), T0 + 700)
check("S7 one payment and one refund",
      psql(f"SELECT string_agg(amount_cents::text, ',' ORDER BY amount_cents DESC) FROM billing.payments WHERE user_id = '{u}'"),
      "2999,-1000")
check("S7 the customer's net payments (what revenue() sums) 1999",
      psql(f"SELECT sum(amount_cents) FROM billing.payments WHERE user_id = '{u}' AND status = 'succeeded'"), "1999")
check("S7 invariants", invariants(u), "")

# S8
import itertools
for n, seq in enumerate(itertools.permutations(["inv", "pi", "ch", "ref"])):
    u = f"p{n}"
    psql(f"SELECT billing._start_free('{u}', to_timestamp({T0 - DAY}))")
    ingest(f"{u}_1", "customer.subscription.created", subscription(f"sub_{u}", f"cus_{u}", "active", T0, T0 + M, u), T0)
    succeeded = charge(f"ch_{u}", f"pi_{u}", f"cus_{u}", 2999, 0, T0 + 62)
    succeeded.update(status="succeeded", paid=True)
    events = {"inv": (f"{u}_2", "invoice.paid", invoice(f"in_{u}", f"sub_{u}", f"cus_{u}", 2999, T0, T0 + M), T0 + 60),
              "pi": (f"{u}_3", "payment_intent.succeeded", payment_intent(f"pi_{u}", f"cus_{u}", 2999, T0 + 61), T0 + 61),
              "ch": (f"{u}_5", "charge.succeeded", succeeded, T0 + 62),
              "ref": (f"{u}_4", "charge.refunded", charge(f"ch_{u}", f"pi_{u}", f"cus_{u}", 2999, 1000, T0 + 62), T0 + 3600)}
    for k in seq:
        ingest(*events[k])
    got = (psql(f"SELECT string_agg(amount_cents::text, ',' ORDER BY amount_cents DESC) FROM billing.payments WHERE user_id = '{u}'"),
           invariants(u),
           psql(f"""SELECT string_agg(e.kind || ' ' || e.amount_cents, ',') FROM billing.ledger_entries e
                    JOIN billing.payments r ON r.id = e.payment_id WHERE r.user_id = '{u}' AND r.refund_of IS NOT NULL"""))
    check(f"S8 {'/'.join(seq)}", got, ("2999,-1000", "", "refund_of_paid_invoice 1000"))
    check(f"S8 {'/'.join(seq)}: the refund names the payment's invoice",
          psql(f"""SELECT r.invoice_id = p.invoice_id FROM billing.payments r JOIN billing.payments p ON p.id = r.refund_of
                   WHERE r.user_id = '{u}'"""), "t")

# S9
u = "late"
psql(f"SELECT billing._start_free('{u}', to_timestamp({T0 - DAY}))")
ingest("late_1", "customer.subscription.created", subscription("sub_late", "cus_late", "active", T0, T0 + M, u), T0)
ingest("late_2", "invoice.paid", invoice("in_late", "sub_late", "cus_late", 2999, T0, T0 + M), T0 + 60)
before = psql(f"SELECT * FROM billing.mrr(to_timestamp({T0 + 10 * DAY}))")
deleted = subscription("sub_late", "cus_late", "canceled", T0, T0 + M, u)
deleted.update(canceled_at=T0 + 5 * DAY, ended_at=T0 + 5 * DAY)
e = copy.deepcopy(FIX["event"])
e.update(id="late_3", type="customer.subscription.deleted", created=T0 + 5 * DAY, api_version="2025-06-30.basil")
e["data"] = {"object": deleted}
payload = json.dumps(e)
psql("SELECT billing.stripe_ingest($pl$" + payload + "$pl$, '" + sign(payload, T0 + 20 * DAY) +
     f"', to_timestamp({T0 + 20 * DAY}))")
# README "Stripe webhooks", Order: Stripe is the source of truth for the
# subscriptions it manages; a late event is dated at its created second and
# corrects the past (SPEC's "a report of a past date never changes" holds for
# billing's own operations, which refuse a backdated change with 22023).
cur, m, n = before.split("|")
check("S9 a late Stripe cancellation corrects the mrr of T0 + 10 d (the README's choice): 2999 and one subscription less",
      psql(f"SELECT * FROM billing.mrr(to_timestamp({T0 + 10 * DAY}))"), f"{cur}|{int(m) - 2999}|{int(n) - 1}")

stripe_money_lib.finish()
PYTHON
