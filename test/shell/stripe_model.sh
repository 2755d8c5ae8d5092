#!/usr/bin/env bash
# The model-based random test of Stripe webhooks (test/model/stripe_model_test.py):
# random per-customer Stripe histories built from ../shared/stripe/fixtures.json,
# signed and delivered through billing.stripe_ingest in random order (late,
# redelivered, same-second ties) between local calls, checked after every step
# against a model written from the README's Stripe section. Three fixed seeds.
set -uo pipefail
cd "$(dirname "$0")/../.."
export STRIPE_FIXTURES="$PWD/../shared/stripe/fixtures.json"
[ -r "$STRIPE_FIXTURES" ] || { echo "fixtures not found at $STRIPE_FIXTURES" >&2; exit 1; }
# Longer campaigns: STRIPE_SEEDS=... STRIPE_USERS=... (or make soak).
python3 test/model/stripe_model_test.py --seeds "${STRIPE_SEEDS:-1,2,3}" --users "${STRIPE_USERS:-30}" --db "billing_stripe_model_$$"
