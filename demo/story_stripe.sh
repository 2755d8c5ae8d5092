#!/usr/bin/env bash
# A Stripe webhook arriving twice and out of order: Grace (user 2) subscribes
# through Stripe Checkout, Stripe redelivers one event, then cancels her in one
# second and delivers the deletion before the update. Each request is signed
# here the way Stripe signs it (HMAC-SHA256 of "t.body" with the endpoint
# secret, by openssl) and handed to billing.stripe_ingest.
set -euo pipefail
secret=whsec_demo_endpoint_secret
t=$(date +%s)
psql -X -q -c "SELECT billing.configure('stripe_webhook_secret', '$secret')" \
	-c "UPDATE billing.subscription_plans SET stripe_price_id = 'price_demo_pro' WHERE code = 'pro_monthly'" >/dev/null

deliver() { # deliver LABEL SIGNED_BODY [SENT_BODY]: a different body sent is a forgery
	local sig
	sig=$(printf '%s' "$t.$2" | openssl dgst -sha256 -hmac "$secret" | awk '{print $NF}')
	printf '   %-58s -> %s\n' "$1" "$(echo "SELECT billing.stripe_ingest(:'body', :'sig')" |
		psql -X -q -t -A -v VERBOSITY=terse -v body="${3:-$2}" -v sig="t=$t,v1=$sig" 2>&1 | sed 's/^ERROR: */refused: /')"
}
sub() { # sub EVENT_ID TYPE STATUS CANCEL_AT_PERIOD_END CREATED
	printf '{"id":"%s","object":"event","type":"%s","created":%s,"data":{"object":{"id":"sub_demo","object":"subscription","customer":"cus_demo","status":"%s","cancel_at_period_end":%s,"start_date":%s,"items":{"object":"list","data":[{"price":{"id":"price_demo_pro"},"current_period_start":%s,"current_period_end":%s}]}}}}' \
		"$1" "$2" "$5" "$3" "$4" "$t" "$t" "$((t + 30 * 86400))"
}
plan() {
	psql -X -q -t -A -c "SELECT '   Grace is on ' || p.code || ' (' || s.status || ')' FROM billing.subscriptions s
		JOIN billing.subscription_plans p ON p.id = s.plan_id WHERE s.user_id = '2' AND s.ended_at IS NULL"
}

echo
echo "== Stripe: Grace subscribes through Checkout"
deliver "checkout.session.completed (client_reference_id 2)" \
	"{\"id\":\"evt_demo_1\",\"object\":\"event\",\"type\":\"checkout.session.completed\",\"created\":$t,\"data\":{\"object\":{\"id\":\"cs_demo\",\"object\":\"checkout.session\",\"mode\":\"subscription\",\"status\":\"complete\",\"client_reference_id\":\"2\",\"customer\":\"cus_demo\",\"subscription\":\"sub_demo\"}}}"
created=$(sub evt_demo_2 customer.subscription.created active false $((t + 1)))
deliver "customer.subscription.created" "$created"
plan
echo "== Stripe delivers the same event again"
deliver "customer.subscription.created (redelivered)" "$created"
deliver "a forged body (active changed to past_due)" "$created" "${created/active/past_due}"
echo "== Grace cancels: Stripe sends updated and deleted in the same second, deleted arrives first"
deliver "customer.subscription.deleted" "$(sub evt_demo_4 customer.subscription.deleted canceled false $((t + 2)))"
deliver "customer.subscription.updated (same second, arrives late)" \
	"$(sub evt_demo_3 customer.subscription.updated active true $((t + 2)))"
plan
psql -X -q -c "SELECT id, type, result, reason FROM billing.stripe_events ORDER BY received_at, id"
