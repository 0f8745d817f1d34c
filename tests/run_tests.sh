#!/usr/bin/env bash
# The test command of the README: installs the test-only dependencies and OpenAI's reference
# code (beside, never into, the environment), then runs every test, the slow ones included.
#   bash tests/run_tests.sh [pytest arguments...]     e.g.  -m "not slow"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
"$PYTHON" -m pip install -q -r "$ROOT/requirements-test.txt"
# OpenAI's CLIP as published in clip-anytorch 2.6.0; its import name is also `clip`, so it is
# unpacked into a folder of its own and the tests load its files by path.
REF="${CLIP_REFERENCE_DIR:-$ROOT/.cache/reference}"
if [ ! -f "$REF/clip/model.py" ]; then
    "$PYTHON" -m pip install -q --no-deps --target "$REF" clip-anytorch==2.6.0
fi
export CLIP_REFERENCE_DIR="$REF"
# open_clip's own code (open_clip_torch 3.3.0) for tests/test_open_clip*.py, unpacked the same way
# (beside the environment; loaded by path by tests/open_clip_reference.py)
OPEN_CLIP_REF="${OPEN_CLIP_REFERENCE_DIR:-$ROOT/.cache/open_clip_ref}"
if [ ! -f "$OPEN_CLIP_REF/open_clip/factory.py" ]; then
    "$PYTHON" -m pip install -q --no-deps --target "$OPEN_CLIP_REF" open_clip_torch==3.3.0
fi
export OPEN_CLIP_REFERENCE_DIR="$OPEN_CLIP_REF"
cd "$ROOT"
set +e
"$PYTHON" -m pytest -p no:cacheprovider -rfEs --durations=15 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
