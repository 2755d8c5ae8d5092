# Helpers shared by test/shell/stripe_money.sh and stripe_money2.sh: Stripe
# objects from ../shared/stripe/fixtures.json, signed events, psql and the
# checks (failures counted here; finish() exits with them).
import copy, hashlib, hmac, json, os, re, subprocess, sys

HERE = os.environ["STRIPE_MONEY_HERE"]
DB = os.environ["STRIPE_MONEY_DB"]
FIX = json.load(open(os.environ["STRIPE_FIXTURES"]))
SECRET = "whsec_rev"
DAY = 86400
T0 = 1893456000  # 2030-01-01 00:00:00 UTC
PRICE = FIX["subscription"]["items"]["data"][0]["price"]["id"]
failures = 0


def psql(script):
    p = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-d", DB, "-v", "VERBOSITY=terse"], input=script,
                       capture_output=True, text=True)
    return (p.stdout.strip() + ("\nSTDERR " + p.stderr.strip() if p.stderr.strip() else "")).strip()


def sign(payload, t):
    mac = hmac.new(SECRET.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def ingest(eid, etype, obj, created):
    e = copy.deepcopy(FIX["event"])
    e.update(id=eid, type=etype, created=created, api_version="2025-06-30.basil")
    e["data"] = {"object": obj}
    payload = json.dumps(e)
    return psql("SELECT billing.stripe_ingest($pl$" + payload + "$pl$, '" + sign(payload, created) +
                f"', to_timestamp({created + 30}));")


def subscription(sub_id, customer, status, start, end, user):
    s = copy.deepcopy(FIX["subscription"])
    s.update(id=sub_id, customer=customer, status=status, created=start, start_date=start, billing_cycle_anchor=start,
             cancel_at=None, canceled_at=None, ended_at=None, cancel_at_period_end=False, trial_start=None,
             trial_end=None, metadata={"user_id": user}, latest_invoice=None, next_pending_invoice_item_invoice=None)
    item = s["items"]["data"][0]
    item["subscription"] = sub_id
    item["price"]["id"] = PRICE
    item["current_period_start"], item["current_period_end"] = start, end
    return s


def invoice(inv_id, sub_id, customer, amount, start, end):
    i = copy.deepcopy(FIX["invoice"])
    i.update(id=inv_id, customer=customer, status="paid", amount_due=amount, amount_paid=amount, amount_remaining=0,
             subtotal=amount, total=amount, number=None, created=start, period_start=start, period_end=start,
             billing_reason="subscription_create", due_date=None, effective_at=start, next_payment_attempt=None,
             webhooks_delivered_at=None)
    i["status_transitions"]["paid_at"] = start + 60
    line = i["lines"]["data"][0]
    line.update(amount=amount, invoice=inv_id, description="1 x Pro (monthly)")
    line["period"] = {"start": start, "end": end}
    i["parent"] = {"type": "subscription_details", "quote_details": None,
                   "subscription_details": {"metadata": {}, "subscription": sub_id}}
    return i


def payment_intent(pi_id, customer, amount, created):
    p = copy.deepcopy(FIX["payment_intent"])
    p.update(id=pi_id, customer=customer, amount=amount, amount_received=amount, status="succeeded", created=created,
             canceled_at=None, metadata={}, last_payment_error=None)
    return p


def check(name, got, want):
    global failures
    if got != want:
        failures += 1
        print(f"FAIL {name}: got {got!r}, want {want!r}")
    else:
        print(f"ok   {name}")


INVARIANTS = re.search(r'INVARIANTS = """(.*?)"""',
                       open(os.path.join(HERE, "test", "model", "model_test.py")).read(), re.S).group(1)


def invariants(user):
    return psql(INVARIANTS.format(users=f"ARRAY['{user}']") + ";")


def local_start(user, plan, paid):
    psql(f"""SELECT billing.subscribe('{user}', '{plan}', to_timestamp({T0}), false);
SELECT billing.record_payment((SELECT id FROM billing.subscriptions WHERE user_id = '{user}' AND ended_at IS NULL),
                              {paid}, 'usd', true, to_timestamp({T0 + 60}));""")


def finish():
    print(f"{failures} failing check(s)")
    sys.exit(1 if failures else 0)
