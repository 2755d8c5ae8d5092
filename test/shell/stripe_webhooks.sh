#!/usr/bin/env bash
# Stripe webhooks end to end: events built from Stripe's own example objects
# (../shared/stripe/fixtures.json, read now, never copied), signed here with
# HMAC-SHA256 (Python's hmac, independent of the extension's code) and handed
# to billing.stripe_ingest through psql. Needs PGHOST/PGPORT/PGUSER (make test
# exports them); works in a database of its own, dropped at the end.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
export STRIPE_FIXTURES="$REPO/../shared/stripe/fixtures.json"
export STRIPE_TEST_DB="billing_stripe_shell_$$"
[ -r "$STRIPE_FIXTURES" ] || { echo "fixtures not found at $STRIPE_FIXTURES" >&2; exit 1; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $STRIPE_TEST_DB"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $STRIPE_TEST_DB" >/dev/null 2>&1 || true' EXIT

python3 - <<'PYTHON'
import copy, hashlib, hmac, json, os, subprocess, sys

DB = os.environ["STRIPE_TEST_DB"]
FIX = json.load(open(os.environ["STRIPE_FIXTURES"]))
failures = 0
checks = 0

def psql(script, variables=None, verbosity="default"):
    args = ["psql", "-X", "-q", "-t", "-A", "-d", DB, "-v", "VERBOSITY=" + verbosity]
    for k, v in (variables or {}).items():
        args += ["-v", f"{k}={v}"]
    p = subprocess.run(args, input=script, capture_output=True, text=True)
    return p.returncode, p.stdout.strip(), p.stderr.strip()

def sql(script, variables=None):
    rc, out, err = psql("\\set ON_ERROR_STOP 1\n" + script, variables)
    if rc != 0:
        print(f"FATAL: SQL failed: {script}\n{err}", file=sys.stderr)
        sys.exit(1)
    return out

def check(name, got, want):
    global failures, checks
    checks += 1
    if got != want:
        failures += 1
        print(f"FAIL {name}: got {got!r}, want {want!r}")
    else:
        print(f"ok   {name}")

def sign(payload, secret, t):
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"

def event(eid, etype, obj, created):
    e = copy.deepcopy(FIX["event"])
    e.update(id=eid, type=etype, created=created, api_version="2025-06-30.basil")
    e["data"] = {"object": obj}
    return json.dumps(e)

SECRET = "whsec_old_secret_for_tests"

def ingest(payload, created, secret=SECRET, at=None, header=None):
    """Returns (result or None, sqlstate-or-None, stderr)."""
    t = created
    hdr = header if header is not None else sign(payload, secret, t)
    at = t + 30 if at is None else at
    # the payload goes in the script (dollar-quoted): a large one does not fit in an argument
    assert "$pl$" not in payload
    rc, out, err = psql("\\set ON_ERROR_STOP 1\nSELECT billing.stripe_ingest($pl$" + payload +
                        "$pl$, :'h', pg_catalog.to_timestamp(:'at'));", {"h": hdr, "at": str(at)}, verbosity="verbose")
    if rc != 0:
        state = err.split("ERROR:", 1)[-1].strip().split(":", 1)[0] if "ERROR:" in err else "?"
        return None, state, err
    return out, None, err

def ingest_ok(name, payload, created, want="applied", **kw):
    res, state, err = ingest(payload, created, **kw)
    check(name, res if state is None else f"error {state}: {err[:400]}", want)

DAY = 86400
T0 = 1767225600  # 2026-01-01 00:00:00 UTC
PRICE = FIX["subscription"]["items"]["data"][0]["price"]["id"]  # price_1PgafmB7WZ01zgkW6dKueIc5

def subscription(sub_id, customer, status, start, end, user=None, trial=None, old_api=False, price=PRICE,
                 cancel_at_period_end=False, ended_at=None):
    s = copy.deepcopy(FIX["subscription"])
    s.update(id=sub_id, customer=customer, status=status, created=start, start_date=start, billing_cycle_anchor=start,
             cancel_at=None, canceled_at=ended_at, ended_at=ended_at, cancel_at_period_end=cancel_at_period_end,
             trial_start=trial[0] if trial else None, trial_end=trial[1] if trial else None,
             metadata={"user_id": user} if user else {}, latest_invoice=None,
             next_pending_invoice_item_invoice=None)
    item = s["items"]["data"][0]
    item["subscription"] = sub_id
    item["price"]["id"] = price
    if old_api:
        del item["current_period_start"], item["current_period_end"]
        s["current_period_start"], s["current_period_end"] = start, end
    else:
        item["current_period_start"], item["current_period_end"] = start, end
    return s

def invoice(inv_id, sub_id, customer, status, amount, start, end, number=None, old_api=False, payment_intent=None,
            reason="subscription_cycle"):
    i = copy.deepcopy(FIX["invoice"])
    i.update(id=inv_id, customer=customer, status=status, amount_due=amount, amount_paid=amount if status == "paid" else 0,
             amount_remaining=0 if status == "paid" else amount, subtotal=amount, total=amount, number=number,
             created=start, period_start=start, period_end=start, billing_reason=reason, due_date=None,
             effective_at=start, next_payment_attempt=None, webhooks_delivered_at=None)
    i["status_transitions"]["paid_at"] = start + 60 if status == "paid" else None
    line = i["lines"]["data"][0]
    line.update(amount=amount, invoice=inv_id, description="1 × Pro (monthly)")
    line["period"] = {"start": start, "end": end}
    if old_api:
        del i["parent"]
        i["subscription"] = sub_id
        i["payment_intent"] = payment_intent
    else:
        i["parent"] = {"type": "subscription_details", "quote_details": None,
                       "subscription_details": {"metadata": {}, "subscription": sub_id}}
    return i

def payment_intent(pi_id, customer, amount, status="succeeded", user=None):
    p = copy.deepcopy(FIX["payment_intent"])
    p.update(id=pi_id, customer=customer, amount=amount, amount_received=amount if status == "succeeded" else 0,
             status=status, created=T0, canceled_at=None, metadata={"user_id": user} if user else {})
    if status != "succeeded":
        p["last_payment_error"] = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
    else:
        p["last_payment_error"] = None
    return p

def charge(ch_id, pi_id, customer, amount, refunded):
    c = copy.deepcopy(FIX["charge"])
    c.update(id=ch_id, payment_intent=pi_id, customer=customer, amount=amount, amount_captured=amount,
             amount_refunded=refunded, refunded=refunded == amount, captured=True, created=T0)
    return c

# --- set-up -------------------------------------------------------------------
sql("""
CREATE EXTENSION billing;
CREATE TABLE app_users (id text PRIMARY KEY);
SELECT billing.attach_users('app_users', 'id');
INSERT INTO app_users VALUES ('u_ooo'), ('u_old'), ('u_other');
SELECT billing._start_free('u_story', '2025-12-01 00:00:00+00');  -- a user since December
UPDATE billing.subscription_plans SET stripe_price_id = 'price_1PgafmB7WZ01zgkW6dKueIc5' WHERE code = 'pro_monthly';
UPDATE billing.subscription_plans SET stripe_price_id = 'price_pro_yearly_test' WHERE code = 'pro_yearly';
UPDATE billing.subscription_plans SET stripe_price_id = 'price_enterprise_test' WHERE code = 'enterprise_yearly';
SELECT billing.configure('stripe_webhook_secret', 'whsec_old_secret_for_tests');
""")
current = lambda user: sql(f"""SELECT p.code || ' ' || s.status || ' ' || COALESCE(s.stripe_subscription_id, '-')
    FROM billing.subscriptions s JOIN billing.subscription_plans p ON p.id = s.plan_id
    WHERE s.user_id = '{user}' AND s.ended_at IS NULL""")

# --- signatures ---------------------------------------------------------------
probe = event("evt_probe", "customer.created", FIX["customer"], T0)
res, state, err = ingest(probe, T0, secret="whsec_wrong")
check("wrong secret -> QB020", state, "QB020")
check("QB020 detail leaks no secret", "whsec_old_secret" in err or "whsec_wrong" in err, False)
check("QB020 has a hint about the configured secret", "stripe_webhook_secret" in err, True)
res, state, err = ingest(probe, T0, at=T0 + 301)
check("timestamp older than tolerance -> QB020", state, "QB020")
check("expired detail names the tolerance", "tolerance" in err, True)
res, state, err = ingest(probe, T0, at=T0 - 301)
check("timestamp from the future -> QB020", state, "QB020")
res, state, err = ingest(probe, T0, header="t=abc")
check("malformed header -> QB020", state, "QB020")
res, state, err = ingest(probe, T0, header=sign(probe, SECRET, T0).replace("v1=", "v0="))
check("no v1 signature -> QB020", state, "QB020")
check("nothing recorded by refused events", sql("SELECT count(*) FROM billing.stripe_events"), "0")
# rotation: the new secret is refused until it is configured next to the old one
NEW = "whsec_new_secret_for_tests"
res, state, err = ingest(probe, T0, secret=NEW)
check("new secret before rotation -> QB020", state, "QB020")
sql("SELECT billing.configure('stripe_webhook_secret', 'whsec_old_secret_for_tests,whsec_new_secret_for_tests')")
ingest_ok("second secret in the list verifies (unhandled type -> ignored)", probe, T0, "ignored", secret=NEW)
ingest_ok("redelivery of an ignored event -> duplicate", probe, T0, "duplicate")
check("ignored event recorded with a reason",
      sql("SELECT result || ': ' || reason FROM billing.stripe_events WHERE id = 'evt_probe'"),
      "ignored: event type not handled")
# a header carrying both signatures (Stripe during a roll) verifies too
both = event("evt_probe_both", "customer.updated", FIX["customer"], T0)
hdr = sign(both, SECRET, T0) + "," + sign(both, NEW, T0).split(",")[1]
ingest_ok("header with two v1 signatures", both, T0, "ignored", header=hdr)
res, state, err = ingest("{not json", T0)
check("malformed JSON after a valid signature -> 22023", state, "22023")

# --- the full story -----------------------------------------------------------
check("u_story starts on Free", current("u_story"), "free active -")
cs = copy.deepcopy(FIX["checkout.session"])
cs.update(mode="subscription", client_reference_id="u_story", customer="cus_story", subscription="sub_story",
          status="complete", payment_status="no_payment_required", payment_intent=None, created=T0)
ingest_ok("checkout.session.completed", event("evt_story_1", "checkout.session.completed", cs, T0), T0)
check("checkout links the customer to the user",
      sql("SELECT user_id FROM billing.stripe_customers WHERE customer_id = 'cus_story'"), "u_story")

T1 = T0 + 14 * DAY
created = subscription("sub_story", "cus_story", "trialing", T0, T1, trial=(T0, T1))  # no metadata: via checkout link
ingest_ok("customer.subscription.created (trialing)", event("evt_story_2", "customer.subscription.created", created, T0 + 1), T0 + 1)
check("u_story is trialing Pro", current("u_story"), "pro_monthly trialing sub_story")
check("trial and period mirrored from Stripe",
      sql("""SELECT trial_start || ' ' || trial_end || ' ' || current_period_start || ' ' || current_period_end
             || ' ' || stripe_customer_id || ' ' || price_cents || ' ' || currency
             FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_story'"""),
      "2026-01-01 00:00:00+00 2026-01-15 00:00:00+00 2026-01-01 00:00:00+00 2026-01-15 00:00:00+00 cus_story 2999 usd")
check("the Free subscription ended as a plan change",
      sql("""SELECT s.status || ' ' || s.end_reason || ' ' || s.ended_at FROM billing.subscriptions s
             JOIN billing.subscription_plans p ON p.id = s.plan_id WHERE s.user_id = 'u_story' AND p.code = 'free'"""),
      "canceled plan_changed 2026-01-01 00:00:00+00")

T2 = T1 + 31 * DAY
inv = invoice("in_story_1", "sub_story", "cus_story", "paid", 2999, T1, T2, number="STORY-0001")
ingest_ok("invoice.paid", event("evt_story_3", "invoice.paid", inv, T1 + 60), T1 + 60)
check("invoice stored, linked to the subscription",
      sql("""SELECT i.number || ' ' || i.status || ' ' || i.amount_paid_cents || ' ' || i.total_cents || ' '
                    || i.billing_reason || ' ' || i.period_start || ' ' || (s.stripe_subscription_id) || ' '
                    || jsonb_array_length(i.lines)
             FROM billing.invoices i JOIN billing.subscriptions s ON s.id = i.subscription_id
             WHERE i.stripe_invoice_id = 'in_story_1'"""),
      "STORY-0001 paid 2999 2999 subscription_cycle 2026-01-15 00:00:00+00 sub_story 1")
ingest_ok("payment_intent.succeeded", event("evt_story_4", "payment_intent.succeeded",
          payment_intent("pi_story", "cus_story", 2999), T1 + 61), T1 + 61)
check("payment stored once under the payment intent id",
      sql("""SELECT count(*) || ' ' || sum(amount_cents) || ' ' || min(status) || ' ' || min(external_id)
             FROM billing.payments WHERE user_id = 'u_story'"""),
      "1 2999 succeeded pi_story")

updated = subscription("sub_story", "cus_story", "active", T1, T2, trial=(T0, T1))
ingest_ok("customer.subscription.updated (active)", event("evt_story_5", "customer.subscription.updated", updated, T1 + 62), T1 + 62)
check("u_story is active Pro with the new period", current("u_story"), "pro_monthly active sub_story")
check("period moved", sql("SELECT current_period_end FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_story'"),
      "2026-02-15 00:00:00+00")

R1 = T1 + 5 * DAY
refund1 = event("evt_story_6", "charge.refunded", charge("ch_story", "pi_story", "cus_story", 2999, 1000), R1)
ingest_ok("charge.refunded (1000 of 2999)", refund1, R1)
ingest_ok("charge.refunded redelivered -> duplicate", refund1, R1, "duplicate")
ingest_ok("charge.refunded (cumulative 1500)", event("evt_story_7", "charge.refunded",
          charge("ch_story", "pi_story", "cus_story", 2999, 1500), R1 + 100), R1 + 100)
ingest_ok("older charge.refunded after a newer one -> stale", event("evt_story_6b", "charge.refunded",
          charge("ch_story", "pi_story", "cus_story", 2999, 1200), R1 + 50), R1 + 50, "stale")
check("refunds are negative payments for the deltas only",
      sql("""SELECT string_agg(r.amount_cents::text, ',' ORDER BY r.id) || ' of ' || o.external_id
             FROM billing.payments r JOIN billing.payments o ON o.id = r.refund_of
             WHERE r.user_id = 'u_story' GROUP BY o.external_id"""),
      "-1000,-500 of pi_story")
check("the charge id is kept on the payment",
      sql("SELECT stripe_charge_id FROM billing.payments WHERE external_id = 'pi_story'"), "ch_story")
check("card details are not stored in the event payload",
      sql("""SELECT count(*) FROM billing.stripe_events WHERE type = 'charge.refunded'
             AND (payload::text LIKE '%4242%' OR payload::text LIKE '%AOB934RVNwzk6xtn%'
                  OR payload::text LIKE '%payment_method_details%' OR payload::text LIKE '%"card": {%')"""), "0")
check("but the rest of the charge is",
      sql("SELECT payload #>> '{data,object,amount_refunded}' FROM billing.stripe_events WHERE id = 'evt_story_7'"), "1500")
check("no card data in any billing table",
      sql("""SELECT count(*) FROM billing.payments p WHERE to_jsonb(p)::text LIKE '%4242%'"""), "0")

T3 = T1 + 20 * DAY
deleted = subscription("sub_story", "cus_story", "canceled", T1, T2, trial=(T0, T1), ended_at=T3)
ingest_ok("customer.subscription.deleted", event("evt_story_8", "customer.subscription.deleted", deleted, T3), T3)
check("the Stripe subscription is canceled and ended",
      sql("""SELECT status || ' ' || end_reason || ' ' || ended_at FROM billing.subscriptions
             WHERE stripe_subscription_id = 'sub_story'"""),
      "canceled canceled 2026-02-04 00:00:00+00")
check("u_story is back on Free", current("u_story"), "free active -")
check("effective plan is Free", sql("SELECT (billing.effective_plan('u_story', '2026-02-05')).code"), "free")
check("one current subscription", sql("SELECT count(*) FROM billing.subscriptions WHERE user_id = 'u_story' AND ended_at IS NULL"), "1")
ingest_ok("an update older than the deletion -> stale", event("evt_story_5b", "customer.subscription.updated",
          updated, T1 + 63), T1 + 63, "stale")
check("still on Free", current("u_story"), "free active -")

# --- out-of-order delivery ----------------------------------------------------
U1, U2 = T0 + 2 * DAY, T0 + 30 * DAY
ooo_created = subscription("sub_ooo", "cus_ooo", "trialing", U1, U1 + 14 * DAY, user="u_ooo", trial=(U1, U1 + 14 * DAY))
ooo_updated = subscription("sub_ooo", "cus_ooo", "active", U1 + 14 * DAY, U2 + 14 * DAY, user="u_ooo",
                           trial=(U1, U1 + 14 * DAY))
ingest_ok("updated delivered first", event("evt_ooo_2", "customer.subscription.updated", ooo_updated, U1 + 14 * DAY),
          U1 + 14 * DAY)
ingest_ok("created delivered late -> stale", event("evt_ooo_1", "customer.subscription.created", ooo_created, U1), U1,
          "stale")
check("out-of-order ends in the newest state", current("u_ooo"), "pro_monthly active sub_ooo")
check("with the newest period", sql("""SELECT current_period_start || ' ' || current_period_end
    FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_ooo'"""),
      "2026-01-17 00:00:00+00 2026-02-14 00:00:00+00")
# same second, two changes: the one delivered last is Stripe's latest
tie = subscription("sub_ooo", "cus_ooo", "past_due", U1 + 14 * DAY, U2 + 14 * DAY, user="u_ooo")
ingest_ok("same second, another change -> applied", event("evt_ooo_3", "customer.subscription.updated", tie, U1 + 14 * DAY),
          U1 + 14 * DAY)
creation_again = subscription("sub_ooo", "cus_ooo", "trialing", U1, U1 + 14 * DAY, user="u_ooo", trial=(U1, U1 + 14 * DAY))
ingest_ok("same second, a creation after a change -> stale", event("evt_ooo_0", "customer.subscription.created",
          creation_again, U1 + 14 * DAY), U1 + 14 * DAY, "stale")
unpaid = subscription("sub_ooo", "cus_ooo", "unpaid", U1 + 14 * DAY, U2 + 14 * DAY, user="u_ooo")
ingest_ok("unpaid", event("evt_ooo_4", "customer.subscription.updated", unpaid, U1 + 15 * DAY), U1 + 15 * DAY)
check("Stripe unpaid is billing past_due", current("u_ooo"), "pro_monthly past_due sub_ooo")
check("Stripe's own status kept verbatim", sql("SELECT stripe_status FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_ooo'"),
      "unpaid")
pend = subscription("sub_ooo", "cus_ooo", "active", U1 + 14 * DAY, U2 + 14 * DAY, user="u_ooo", cancel_at_period_end=True)
ingest_ok("cancel at period end", event("evt_ooo_5", "customer.subscription.updated", pend, U1 + 16 * DAY), U1 + 16 * DAY)
check("pending cancel: canceled, cancel_at_period_end, not ended",
      sql("""SELECT status || ' ' || cancel_at_period_end || ' ' || (ended_at IS NULL)
             FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_ooo'"""), "canceled true true")
check("entitlements continue until period end", sql("SELECT (billing.effective_plan('u_ooo', '2026-02-01')).code"),
      "pro_monthly")
react = subscription("sub_ooo", "cus_ooo", "active", U1 + 14 * DAY, U2 + 14 * DAY, user="u_ooo")
ingest_ok("reactivated", event("evt_ooo_6", "customer.subscription.updated", react, U1 + 17 * DAY), U1 + 17 * DAY)
check("reactivation mirrored", sql("""SELECT status || ' ' || cancel_at_period_end || ' ' || (canceled_at IS NULL)
    FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_ooo'"""), "active false true")
check("the history dates each change at its event's time (not now, not a time on the row)",
      sql("""SELECT string_agg(h.status || ' ' || h.valid_from, ', ' ORDER BY h.valid_from) FROM billing.subscription_history h
             JOIN billing.subscriptions s ON s.id = h.subscription_id
             WHERE s.stripe_subscription_id = 'sub_ooo' AND h.valid_from >= '2026-01-18'"""),
      "canceled 2026-01-19 00:00:00+00, active 2026-01-20 00:00:00+00")
# a plan change in Stripe (same subscription, new price)
yearly = subscription("sub_ooo", "cus_ooo", "active", U1 + 18 * DAY, U1 + 18 * DAY + 365 * DAY, user="u_ooo",
                      price="price_pro_yearly_test")
ingest_ok("price change", event("evt_ooo_7", "customer.subscription.updated", yearly, U1 + 18 * DAY), U1 + 18 * DAY)
check("plan follows the Stripe price", current("u_ooo"), "pro_yearly active sub_ooo")
check("with that plan's price", sql("SELECT price_cents || ' ' || billing_interval FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_ooo'"),
      "28800 yearly")

# --- older API versions: top-level period and invoice subscription -------------
V1, V2 = T0 + 3 * DAY, T0 + 34 * DAY
old = subscription("sub_old", "cus_old", "active", V1, V2, user="u_old", old_api=True)
ingest_ok("subscription with top-level current_period_*", event("evt_old_1", "customer.subscription.created", old, V1), V1)
check("period read from the top-level fields", sql("""SELECT current_period_start || ' ' || current_period_end
    FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_old'"""),
      "2026-01-04 00:00:00+00 2026-02-04 00:00:00+00")
old_inv = invoice("in_old_1", "sub_old", "cus_old", "paid", 2999, V1, V2, number=None, old_api=True,
                  payment_intent="pi_old_1", reason="subscription_create")
ingest_ok("invoice with top-level subscription", event("evt_old_2", "invoice.paid", old_inv, V1 + 10), V1 + 10)
check("invoice linked through the top-level subscription, generated number",
      sql("""SELECT s.stripe_subscription_id || ' ' || (i.number ~ '^INV-[0-9]{6}-[0-9]{6}$') || ' ' || i.billing_reason
             FROM billing.invoices i
             JOIN billing.subscriptions s ON s.id = i.subscription_id WHERE i.stripe_invoice_id = 'in_old_1'"""),
      "sub_old true subscription_create")
check("older API: the payment comes with the invoice",
      sql("""SELECT p.amount_cents || ' ' || p.external_id || ' ' || (p.invoice_id = i.id) FROM billing.payments p
             JOIN billing.invoices i ON i.stripe_invoice_id = 'in_old_1' WHERE p.external_id = 'pi_old_1'"""),
      "2999 pi_old_1 true")
pi_old = payment_intent("pi_old_1", "cus_old", 2999)
pi_old["invoice"] = "in_old_1"
ingest_ok("the payment intent for the same payment", event("evt_old_3", "payment_intent.succeeded", pi_old, V1 + 11), V1 + 11)
check("still one payment", sql("SELECT count(*) FROM billing.payments WHERE user_id = 'u_old' AND refund_of IS NULL"), "1")
ingest_ok("invoice.created for a draft", event("evt_old_4", "invoice.created",
          invoice("in_old_2", "sub_old", "cus_old", "draft", 2999, V2, V2 + 28 * DAY), V2), V2)
ingest_ok("invoice.finalized", event("evt_old_5", "invoice.finalized",
          invoice("in_old_2", "sub_old", "cus_old", "open", 2999, V2, V2 + 28 * DAY), V2 + 1), V2 + 1)
ingest_ok("invoice.payment_failed", event("evt_old_6", "invoice.payment_failed",
          invoice("in_old_2", "sub_old", "cus_old", "open", 2999, V2, V2 + 28 * DAY), V2 + 2), V2 + 2)
check("draft -> open, still due", sql("SELECT status || ' ' || amount_due_cents || ' ' || amount_paid_cents FROM billing.invoices WHERE stripe_invoice_id = 'in_old_2'"),
      "open 2999 0")
ingest_ok("payment_intent.payment_failed", event("evt_old_7", "payment_intent.payment_failed",
          payment_intent("pi_old_2", "cus_old", 2999, status="requires_payment_method"), V2 + 3), V2 + 3)
check("failed payment stored with its failure code",
      sql("SELECT status || ' ' || failure_code || ' ' || amount_cents FROM billing.payments WHERE external_id = 'pi_old_2'"),
      "failed card_declined 2999")
ingest_ok("the same payment intent succeeds on retry", event("evt_old_8", "payment_intent.succeeded",
          payment_intent("pi_old_2", "cus_old", 2999), V2 + 4), V2 + 4)
check("the payment row becomes succeeded",
      sql("SELECT status || ' ' || (failure_code IS NULL) FROM billing.payments WHERE external_id = 'pi_old_2'"),
      "succeeded true")

# --- payments once, whichever of invoice.paid and payment_intent.succeeded comes first ---
W = V2 + 40 * DAY
ingest_ok("payment_intent.succeeded before its invoice", event("evt_rev_1", "payment_intent.succeeded",
          payment_intent("pi_rev", "cus_old", 1234), W), W)
check("a payment on no invoice yet: revenue, but no ledger row (billing grants no credit Stripe never did)",
      sql("""SELECT count(e.id) || ' ' || (SELECT sum(r.value) FROM billing.revenue(%s, %s, 'day') r
                                         WHERE r.metric = 'revenue_cents_usd')
             FROM billing.payments p LEFT JOIN billing.ledger_entries e ON e.payment_id = p.id
            WHERE p.external_id = 'pi_rev'""" % (f"to_timestamp({W})", f"to_timestamp({W + 1})")),
      "0 1234")
rev_inv = invoice("in_rev", "sub_old", "cus_old", "paid", 1234, W, W + 28 * DAY, reason="manual")
ingest_ok("then invoice.paid (current API: names no payment intent)", event("evt_rev_2", "invoice.paid", rev_inv, W + 5), W + 5)
check("one payment, on the invoice, under the payment intent",
      sql("""SELECT count(*) || ' ' || min(p.external_id) || ' ' || bool_and(p.invoice_id = i.id) FROM billing.payments p
             JOIN billing.invoices i ON i.stripe_invoice_id = 'in_rev' WHERE p.amount_cents = 1234 AND p.user_id = 'u_old'"""),
      "1 pi_rev true")
check("and once its invoice arrives, one payment_to_invoice ledger row for it",
      sql("""SELECT string_agg(e.kind || ' ' || e.amount_cents, ',') FROM billing.payments p
             JOIN billing.ledger_entries e ON e.payment_id = p.id WHERE p.external_id = 'pi_rev'"""),
      "payment_to_invoice 1234")
fwd_inv = invoice("in_fwd", "sub_old", "cus_old", "paid", 4321, W + DAY, W + 29 * DAY, reason="manual")
ingest_ok("invoice.payment_succeeded first", event("evt_fwd_1", "invoice.payment_succeeded", fwd_inv, W + DAY), W + DAY)
check("records the payment under the invoice",
      sql("SELECT external_id FROM billing.payments WHERE amount_cents = 4321 AND user_id = 'u_old'"), "stripe_invoice:in_fwd")
ingest_ok("then invoice.paid of the same invoice", event("evt_fwd_2", "invoice.paid", fwd_inv, W + DAY + 1), W + DAY + 1)
ingest_ok("then its payment_intent.succeeded", event("evt_fwd_3", "payment_intent.succeeded",
          payment_intent("pi_fwd", "cus_old", 4321), W + DAY + 2), W + DAY + 2)
check("still one payment, now under the payment intent, on the invoice",
      sql("""SELECT count(*) || ' ' || min(p.external_id) || ' ' || bool_and(p.invoice_id = i.id) FROM billing.payments p
             JOIN billing.invoices i ON i.stripe_invoice_id = 'in_fwd' WHERE p.amount_cents = 4321 AND p.user_id = 'u_old'"""),
      "1 pi_fwd true")

# --- one payment from invoice.paid, payment_intent.succeeded and charge.succeeded, in every order ---
import itertools
wrong = []
for k, order in enumerate(itertools.permutations(["invoice.paid", "payment_intent.succeeded", "charge.succeeded"])):
    amount, at = 700 + k, W + (3 + k) * DAY
    objects = {"invoice.paid": invoice(f"in_perm_{k}", "sub_old", "cus_old", "paid", amount, at, at + 28 * DAY, reason="manual"),
               "payment_intent.succeeded": payment_intent(f"pi_perm_{k}", "cus_old", amount),
               "charge.succeeded": charge(f"ch_perm_{k}", f"pi_perm_{k}", "cus_old", amount, 0)}
    for n, etype in enumerate(order):
        res, state, err = ingest(event(f"evt_perm_{k}_{n}", etype, objects[etype], at + n), at + n)
        if res != "applied":
            wrong.append(f"{order}: {etype} -> {res or state}")
    got = sql(f"""SELECT count(*) || ' ' || min(p.external_id) || ' ' || min(p.stripe_charge_id) || ' '
                         || bool_and(p.invoice_id = i.id) || ' ' || count(e.id)
                    FROM billing.payments p JOIN billing.invoices i ON i.stripe_invoice_id = 'in_perm_{k}'
                    LEFT JOIN billing.ledger_entries e ON e.payment_id = p.id AND e.kind = 'payment_to_invoice'
                         AND e.invoice_id = i.id AND e.amount_cents = p.amount_cents
                   WHERE p.user_id = 'u_old' AND p.amount_cents = {amount}""")
    if got != f"1 pi_perm_{k} ch_perm_{k} true 1":
        wrong.append(f"{order}: {got}")
check("invoice.paid, payment_intent.succeeded, charge.succeeded in all 6 orders: one payment under the "
      "payment intent, with its charge, on the invoice, settling it in the ledger", wrong, [])

# --- ignored events -------------------------------------------------------------
unknown = subscription("sub_unknown", "cus_unknown", "active", T0, T0 + 31 * DAY, user="u_other", price="price_nobody")
ingest_ok("unknown price -> ignored", event("evt_unknown_price", "customer.subscription.created", unknown, T0), T0, "ignored")
check("with a reason naming the price",
      sql("SELECT reason FROM billing.stripe_events WHERE id = 'evt_unknown_price'"),
      'no plan has stripe price "price_nobody"; set billing.subscription_plans.stripe_price_id')
check("and nothing changed", current("u_other"), "free active -")
stranger = subscription("sub_stranger", "cus_stranger", "active", T0, T0 + 31 * DAY)
ingest_ok("no user for the subscription -> pending", event("evt_stranger", "customer.subscription.created", stranger, T0),
          T0, "pending")

# --- trial_will_end -------------------------------------------------------------
tw = subscription("sub_tw", "cus_tw", "trialing", T0, T0 + 14 * DAY, user="u_other", trial=(T0, T0 + 14 * DAY))
ingest_ok("created (trialing) for u_other", event("evt_tw_1", "customer.subscription.created", tw, T0), T0)
ingest_ok("trial_will_end", event("evt_tw_2", "customer.subscription.trial_will_end",
          tw, T0 + 11 * DAY), T0 + 11 * DAY)
check("a notification is queued", sql("""SELECT n.user_id || ' ' || n.kind FROM billing.notifications n
    JOIN billing.subscriptions s ON s.id = n.subscription_id WHERE s.stripe_subscription_id = 'sub_tw'"""),
      "u_other trial_will_end")
ingest_ok("trial_will_end again under another event id", event("evt_tw_3", "customer.subscription.trial_will_end",
          tw, T0 + 11 * DAY + 1), T0 + 11 * DAY + 1)
check("still one notification for that trial end", sql("""SELECT count(*) FROM billing.notifications n
    JOIN billing.subscriptions s ON s.id = n.subscription_id WHERE s.stripe_subscription_id = 'sub_tw'"""), "1")

# --- checkout parameters ----------------------------------------------------------
check("checkout params for a user who had a Pro trial: no trial days",
      sql("SELECT billing.stripe_checkout_params('u_story', 'pro_yearly')"),
      '{"mode": "subscription", "line_items": [{"price": "price_pro_yearly_test", "quantity": 1}], '
      '"subscription_data": {"metadata": {"user_id": "u_story"}}, "client_reference_id": "u_story"}')
check("checkout params for a new user: the plan's trial days",
      sql("SELECT billing.stripe_checkout_params('u_new', 'enterprise_yearly') -> 'subscription_data'"),
      '{"metadata": {"user_id": "u_new"}, "trial_period_days": 30}')

# --- result: every event row has a result, the audit of one user's story -----------
check("events by result", sql("SELECT string_agg(result || '=' || n, ' ' ORDER BY result) FROM "
                              "(SELECT result, count(*) n FROM billing.stripe_events GROUP BY result) r"),
      "applied=48 ignored=3 pending=1 stale=4")

# --- same-second pairs, both delivery orders --------------------------------------
def ingest_many(events):
    """events: [(payload, created)] in delivery order, one psql session; returns the results."""
    lines = []
    for payload, created in events:
        assert "$pl$" not in payload
        lines.append(f"SELECT billing.stripe_ingest($pl${payload}$pl$, '{sign(payload, SECRET, created)}', "
                     f"pg_catalog.to_timestamp({created + 30}));")
    return sql("\n".join(lines)).split("\n")

S = T0 + 40 * DAY  # the shared second
S_END = S + 30 * DAY
specs = [  # (name, event type, Stripe status, cancel_at_period_end, final in billing's eyes)
    ("created", "customer.subscription.created", "trialing", False, False),
    ("active", "customer.subscription.updated", "active", False, False),
    ("past_due", "customer.subscription.updated", "past_due", False, False),
    ("pending_cancel", "customer.subscription.updated", "active", True, False),
    ("trial_will_end", "customer.subscription.trial_will_end", "trialing", False, False),
    ("canceled", "customer.subscription.updated", "canceled", False, True),
    ("deleted", "customer.subscription.deleted", "canceled", False, True),
]
def expected_survivor(a, b):
    # an independent statement of the promise: final beats non-final, deletion
    # beats the rest, a creation never overwrites a change; else the last delivered
    rank = lambda x: (x[4], x[1].endswith(".deleted"), not x[1].endswith(".created"))
    return a if rank(a) > rank(b) else b
batch, pairs = [], []
for i, a in enumerate(specs):
    for j, b in enumerate(specs):
        if i == j:
            continue
        sub_id, user = f"sub_pair_{i}_{j}", f"u_pair_{i}_{j}"
        for k, spec in enumerate((a, b)):
            name, etype, status, cape, final = spec
            obj = subscription(sub_id, f"cus_pair_{i}_{j}", status, S, S_END, user=user, cancel_at_period_end=cape,
                               ended_at=S if etype.endswith(".deleted") or status == "canceled" else None)
            batch.append((event(f"evt_pair_{i}_{j}_{k}", etype, obj, S), S))
        pairs.append((a, b, sub_id))
results = ingest_many(batch)
state = dict(line.split("|", 1) for line in sql(
    "SELECT stripe_subscription_id || '|' || status || ' ' || cancel_at_period_end || ' ' || (ended_at IS NOT NULL) "
    "FROM billing.subscriptions WHERE stripe_subscription_id LIKE 'sub_pair_%'").split("\n"))
billing_state = {"created": "trialing false false", "active": "active false false", "past_due": "past_due false false",
                 "pending_cancel": "canceled true false", "trial_will_end": "trialing false false",
                 "canceled": "canceled false true", "deleted": "canceled false true"}
wrong = [f"{a[0]} then {b[0]}: {state.get(sub)}" for a, b, sub in pairs
         if state.get(sub) != billing_state[expected_survivor(a, b)[0]]]
check(f"{len(pairs)} same-second pairs of subscription events, both orders, end in the promised state", wrong, [])
check("the issue's case: updated then deleted in one second ends canceled and ended",
      state["sub_pair_1_6"], "canceled false true")
check("and deleted then updated too", state["sub_pair_6_1"], "canceled false true")
check("both users of that case are back on Free", current("u_pair_1_6") + " / " + current("u_pair_6_1"),
      "free active - / free active -")

# invoices and payment intents of one second
inv_open = invoice("in_pair", "sub_old", "cus_old", "open", 2999, S, S_END)
inv_paid = invoice("in_pair", "sub_old", "cus_old", "paid", 2999, S, S_END)
ingest_many([(event("evt_inv_pair_paid", "invoice.paid", inv_paid, S), S),
             (event("evt_inv_pair_failed", "invoice.payment_failed", inv_open, S), S)])
check("invoice.paid then payment_failed of the same second: stays paid",
      sql("SELECT status FROM billing.invoices WHERE stripe_invoice_id = 'in_pair'"), "paid")
pi_ok, pi_bad = payment_intent("pi_pair", "cus_old", 500), payment_intent("pi_pair", "cus_old", 500, status="requires_payment_method")
ingest_many([(event("evt_pi_pair_ok", "payment_intent.succeeded", pi_ok, S), S),
             (event("evt_pi_pair_bad", "payment_intent.payment_failed", pi_bad, S), S)])
check("payment_intent succeeded then failed of the same second: stays succeeded",
      sql("SELECT status FROM billing.payments WHERE external_id = 'pi_pair'"), "succeeded")

# --- pending: events before the checkout that names their user ------------------
P0 = T0 + 50 * DAY
pend_sub = subscription("sub_pend", "cus_pend", "active", P0, P0 + 31 * DAY)  # no metadata.user_id
pend_inv = invoice("in_pend", "sub_pend", "cus_pend", "paid", 2999, P0, P0 + 31 * DAY, reason="subscription_create")
pend_upd = subscription("sub_pend", "cus_pend", "active", P0, P0 + 31 * DAY, cancel_at_period_end=True)
ingest_ok("subscription before its checkout -> pending", event("evt_pend_1", "customer.subscription.created", pend_sub, P0), P0, "pending")
ingest_ok("its invoice -> pending", event("evt_pend_2", "invoice.paid", pend_inv, P0 + 1), P0 + 1, "pending")
ingest_ok("its later update -> pending", event("evt_pend_3", "customer.subscription.updated", pend_upd, P0 + 2), P0 + 2, "pending")
check("a DBA sees what is pending, in order",
      sql("SELECT string_agg(id, ',' ORDER BY created) FROM billing.stripe_pending WHERE customer_id = 'cus_pend'"),
      "evt_pend_1,evt_pend_2,evt_pend_3")
check("nothing applied yet", current("u_pend"), "")
cs_pend = copy.deepcopy(FIX["checkout.session"])
cs_pend.update(mode="subscription", client_reference_id="u_pend", customer="cus_pend", subscription="sub_pend",
               status="complete", payment_intent=None, created=P0)
ingest_ok("checkout.session.completed arrives last", event("evt_pend_4", "checkout.session.completed", cs_pend, P0 + 3), P0 + 3)
check("the pending events were applied in order", current("u_pend"), "pro_monthly canceled sub_pend")
check("with the update's pending cancel", sql("SELECT cancel_at_period_end || ' ' || (ended_at IS NULL) FROM billing.subscriptions WHERE stripe_subscription_id = 'sub_pend'"), "true true")
check("and the invoice stored for that user", sql("SELECT user_id || ' ' || status FROM billing.invoices WHERE stripe_invoice_id = 'in_pend'"), "u_pend paid")
check("nothing left pending for that customer", sql("SELECT count(*) FROM billing.stripe_pending WHERE customer_id = 'cus_pend'"), "0")
check("their results are now applied", sql("SELECT string_agg(result, ',' ORDER BY id) FROM billing.stripe_events WHERE id LIKE 'evt_pend_%'"),
      "applied,applied,applied,applied")

# --- replay and retention ------------------------------------------------------
payments_before = sql("SELECT count(*) || ' ' || sum(amount_cents) FROM billing.payments")
check("stripe_replay of an applied refund", sql("SELECT billing.stripe_replay('evt_story_7')"), "applied")
check("stripe_replay of an applied invoice", sql("SELECT billing.stripe_replay('evt_old_2')"), "applied")
check("replays change nothing", sql("SELECT count(*) || ' ' || sum(amount_cents) FROM billing.payments"), payments_before)
check("stripe_replay of a stale event is still stale", sql("SELECT billing.stripe_replay('evt_story_5b')"), "stale")
rc, out, err = psql("SELECT billing.stripe_replay('evt_never');", verbosity="verbose")
check("stripe_replay of an unknown id -> 22023", "22023" in err, True)
sql("SELECT billing.configure('stripe_event_retention', '30 days')")
pruned = sql("SELECT count FROM billing.run_maintenance('2026-12-31') WHERE action = 'stripe_payloads_pruned'")
check("run_maintenance reports the pruned payloads", int(pruned or 0) > 0, True)
check("maintenance prunes old payloads, keeps pending ones",
      sql("SELECT count(*) FILTER (WHERE payload IS NULL) > 0 AND bool_and(payload IS NOT NULL OR result <> 'pending') FROM billing.stripe_events"), "t")
ingest_ok("a redelivery after pruning is still a duplicate", refund1, R1, "duplicate")
rc, out, err = psql("SELECT billing.stripe_replay('evt_story_7');", verbosity="verbose")
check("a pruned event cannot be replayed (22023)", "22023" in err and "pruned" in err, True)

# --- a Stripe refund takes back what billing.refund would (attacker review R3) ----
# 8000 recorded by billing.record_payment under the payment intent's id: 2999
# pays the first invoice, 5001 goes to credit. Stripe refunds the whole charge:
# the refund takes the 5001 of credit back (its payment's own credit first),
# the rest stays with the paid invoice; paid net 0, credit 0 (before: the
# refund row alone, credit 5001 kept and no way to take it back).
G = T0 + 50 * DAY
sql("""SELECT billing.subscribe('u_r3', 'pro_monthly', pg_catalog.to_timestamp(:'t'), false);
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'u_r3' AND ended_at IS NULL),
       8000, 'usd', true, pg_catalog.to_timestamp(:'t'), 'pi_r3');""", {"t": str(G)})
check("8000 paid: 5001 in credit", sql("SELECT billing.credit_balance('u_r3')"), "5001")
r3 = charge("ch_r3", "pi_r3", "cus_r3", 8000, 8000)
r3.update(created=G + 3600, metadata={"user_id": "u_r3"})
ingest_ok("charge.refunded of a payment recorded by record_payment", event("evt_r3", "charge.refunded", r3, G + 3600), G + 3600)
check("the Stripe refund takes back the credit as billing.refund does",
      sql("""SELECT billing.credit_balance('u_r3') || ' ' || sum(amount_cents) || ' '
             || (SELECT string_agg(kind || ':' || amount_cents, ',' ORDER BY id) FROM billing.ledger_entries
                  WHERE user_id = 'u_r3' AND kind IN ('credit_refunded', 'refund_of_paid_invoice'))
             FROM billing.payments WHERE user_id = 'u_r3'"""),
      "0 0 credit_refunded:5001,refund_of_paid_invoice:2999")

# The same when record_payment stored the payment under the charge's id (as
# a success's external id should be, sql/26_hostile_money.sql M3): the refund
# finds that payment, not a new one made up from the charge (second attacker
# review F1: a phantom 8000 was stored and refunded, the 5001 credit kept).
sql("""SELECT billing.subscribe('u_f1', 'pro_monthly', pg_catalog.to_timestamp(:'t'), false);
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'u_f1' AND ended_at IS NULL),
       8000, 'usd', true, pg_catalog.to_timestamp(:'t'), 'ch_f1');""", {"t": str(G)})
f1 = charge("ch_f1", "pi_f1", "cus_f1", 8000, 8000)
f1.update(created=G + 3600, metadata={"user_id": "u_f1"})
ingest_ok("charge.refunded of a payment recorded under the charge id", event("evt_f1", "charge.refunded", f1, G + 3600), G + 3600)
check("the refund is of that payment: one payment, credit 0, paid net 0",
      sql("""SELECT count(*) FILTER (WHERE refund_of IS NULL) || ' ' || billing.credit_balance('u_f1') || ' '
             || sum(amount_cents) FROM billing.payments WHERE user_id = 'u_f1'"""), "1 0 0")

# A Stripe payment billing holds no invoice for is not placed in the ledger, and
# does not count in what the customer paid net (attacker review R7): M8 a of
# sql/26_hostile_money.sql (2999 for January, an upgrade on 2 Jan whose
# invoice nets a 2902 credit line, a cancel on 3 Jan that voids it and
# returns the 2902 as credit, the 2999 refunded on 4 Jan: the customer would
# hold 2902 of 0 paid net, so the refund takes it back) with an unrelated
# 1000 Stripe payment of the same user beside it: credit 0 (1000 was left
# when that payment counted as paid).
sql("""SELECT billing.subscribe('u_r7', 'pro_monthly', '2030-01-01', false);
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = 'u_r7' AND ended_at IS NULL),
       2999, 'usd', true, '2030-01-01', 'pi_r7_own');""")
ingest_ok("payment_intent.succeeded on no invoice", event("evt_r7", "payment_intent.succeeded",
          payment_intent("pi_r7_free", "cus_r7", 1000, user="u_r7"), G + 7200), G + 7200)
sql("""SELECT billing.change_plan((SELECT id FROM billing.subscriptions WHERE user_id = 'u_r7' AND ended_at IS NULL),
       'pro_yearly', '2030-01-02');
SELECT billing.cancel((SELECT id FROM billing.subscriptions WHERE user_id = 'u_r7' AND ended_at IS NULL),
       false, '2030-01-03');
SELECT billing.refund((SELECT id FROM billing.payments WHERE external_id = 'pi_r7_own'), 2999, '2030-01-04');""")
check("an unplaced Stripe payment does not widen the conservation bound",
      sql("SELECT billing.credit_balance('u_r7')"), "0")

# --- hostile payloads, validly signed ---------------------------------------------
H = T0 + 60 * DAY
deep = subscription("sub_deep", "cus_deep", "active", H, H + DAY, user="u_deep")
deep["metadata"]["x"] = "PLACEHOLDER"
deep_payload = event("evt_deep", "customer.subscription.updated", deep, H).replace('"PLACEHOLDER"', "[" * 100000 + "]" * 100000)
res, state_, err = ingest(deep_payload, H)
check("100,000 nested arrays -> 54000, no crash", state_, "54000")
huge = subscription("sub_huge", "cus_huge", "active", H, H + DAY, user="u_deep")
huge["metadata"]["x"] = "x" * (2 * 1024 * 1024)
res, state_, err = ingest(event("evt_huge", "customer.subscription.updated", huge, H), H)
check("a 2 MB payload -> 54000", state_, "54000")
big = payment_intent("pi_big", "cus_old", 2999)
big_payload = event("evt_big", "payment_intent.succeeded", big, H).replace('"amount": 2999', '"amount": 1e30', 1)
res, state_, err = ingest(big_payload, H)
check("amount 1e30 -> 22023, not 0", state_, "22023")
far = subscription("sub_far", "cus_far", "active", H, 253402300800, user="u_deep")
res, state_, err = ingest(event("evt_far", "customer.subscription.updated", far, H), H)
check("current_period_end past 9999 -> 22023, not NULL", state_, "22023")
check("none of them stored", sql("SELECT count(*) FROM billing.stripe_events WHERE id IN ('evt_deep', 'evt_huge', 'evt_big', 'evt_far')"), "0")

print(f"{checks - failures} of {checks} checks passed")
sys.exit(1 if failures else 0)
PYTHON
