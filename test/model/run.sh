#!/usr/bin/env bash
# make soak: the model-based random tests (test/model/model_test.py and
# stripe_model_test.py) with more seeds and steps than make test, on a
# throwaway cluster.
#   SEEDS=1,2,...  STEPS=steps per seed (defaults: seeds 101..120, 5000 steps each)
#   MODEL_BEHIND=0.2: that share of lifecycle steps dated behind the latest maintenance run
set -uo pipefail
cd "$(dirname "$0")/../.."
source test/cluster.sh
make -s -j2 >/dev/null || exit 1
cluster_start || exit 1
trap cluster_stop EXIT
seeds=${SEEDS:-$(seq -s, 101 120)}
rc=0
python3 test/model/model_test.py --seeds "$seeds" --steps "${STEPS:-5000}" || rc=1
# and the Stripe model test (test/model/stripe_model_test.py), its own seeds:
#   STRIPE_SEEDS=... (default 101..140)  STRIPE_USERS=users per seed (default 30)
STRIPE_FIXTURES="$PWD/../shared/stripe/fixtures.json" python3 test/model/stripe_model_test.py \
	--seeds "${STRIPE_SEEDS:-$(seq -s, 101 140)}" --users "${STRIPE_USERS:-30}" || rc=1
exit $rc
