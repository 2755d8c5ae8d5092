#!/usr/bin/env bash
# Builds the libFuzzer target over the core's Stripe event parsing
# (test/fuzz/stripe_event_fuzz.cpp, clang-14 with ASan and UBSan) and runs it
# for SECONDS (default 25) from a seed corpus of events built from Stripe's own
# objects (../shared/stripe/fixtures.json, read now, never copied).
#   bash test/fuzz/run.sh [SECONDS]     make test runs ~25 s, make fuzz 10 minutes
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-25}
out=build/fuzz
mkdir -p "$out/corpus"
CXX=${FUZZ_CXX:-clang++-14}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (test/deps.sh installs clang-14)" >&2; exit 1; }
if [ ! -x "$out/stripe_event_fuzz" ] || [ -n "$(find src/core test/fuzz -newer "$out/stripe_event_fuzz" -name '*.[ch]pp' | head -1)" ]; then
	"$CXX" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc \
		test/fuzz/stripe_event_fuzz.cpp src/core/stripe_event.cpp src/core/stripe_signature.cpp src/core/lifecycle.cpp src/core/calendar.cpp \
		-lcrypto -o "$out/stripe_event_fuzz"
fi
python3 - "$out/corpus" <<'PYTHON'
import copy, json, os, sys
fix = json.load(open(os.path.join(os.path.dirname(os.path.abspath("test")), "..", "shared", "stripe", "fixtures.json")))
corpus = sys.argv[1]
types = {"subscription": ["customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"],
         "invoice": ["invoice.created", "invoice.paid", "invoice.payment_failed", "invoice.payment_succeeded", "invoice.voided"],
         "payment_intent": ["payment_intent.succeeded", "payment_intent.payment_failed"],
         "charge": ["charge.refunded", "charge.succeeded"], "checkout.session": ["checkout.session.completed"],
         "customer": ["customer.created"]}
n = 0
for name, event_types in types.items():
    for t in event_types:
        e = copy.deepcopy(fix["event"])
        e.update(id=f"evt_seed_{n}", type=t, created=1767225600, data={"object": fix[name]})
        with open(os.path.join(corpus, f"seed_{n}.json"), "w") as f:
            json.dump(e, f, separators=(",", ":"))
        n += 1
PYTHON
log=$out/fuzz.log
# -max_len: fixture events are a few kilobytes; 64 KiB leaves room to nest deeply
"$out/stripe_event_fuzz" "$out/corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
	-print_final_stats=1 >"$log" 2>&1
rc=$?
grep -E '^stat::number_of_executed_units|^stat::new_units_added|^stat::peak_rss_mb' "$log" | tr '\n' ' '
echo
[ $rc -eq 0 ] || { tail -40 "$log"; exit 1; }
