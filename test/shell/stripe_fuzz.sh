#!/usr/bin/env bash
# The libFuzzer target over the core's Stripe event parsing, for a bounded
# time (make fuzz runs it for ten minutes). See test/fuzz/run.sh.
exec bash "$(dirname "$0")/../fuzz/run.sh" "${STRIPE_FUZZ_SECONDS:-20}"
