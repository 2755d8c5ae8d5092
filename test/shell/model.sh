#!/usr/bin/env bash
# The model-based random test of money and access (test/model/model_test.py):
# two fixed seeds, 2500 steps each, 50 users over two simulated years.
set -uo pipefail
cd "$(dirname "$0")/../.."
python3 test/model/model_test.py --seeds 1,2 --steps 2500
