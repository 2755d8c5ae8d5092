#!/usr/bin/env bash
# make soak: the model-based random test (test/model/model_test.py) with more
# seeds and steps than make test, on a throwaway cluster.
#   SEEDS=1,2,...  STEPS=steps per seed (defaults: seeds 101..120, 5000 steps each)
set -uo pipefail
cd "$(dirname "$0")/../.."
source test/cluster.sh
make -s -j2 >/dev/null || exit 1
cluster_start || exit 1
trap cluster_stop EXIT
seeds=${SEEDS:-$(seq -s, 101 120)}
python3 test/model/model_test.py --seeds "$seeds" --steps "${STEPS:-5000}"
