#!/usr/bin/env bash
# The model-based random test of money and access (test/model/model_test.py):
# two fixed seeds, 2500 steps each, 50 users over two simulated years.
# Longer campaigns: MODEL_SEEDS=... MODEL_STEPS=... (and MODEL_BEHIND=0.2 to date
# that share of lifecycle steps behind the latest maintenance run), or make soak.
set -uo pipefail
cd "$(dirname "$0")/../.."
python3 test/model/model_test.py --seeds "${MODEL_SEEDS:-1,2}" --steps "${MODEL_STEPS:-2500}"
