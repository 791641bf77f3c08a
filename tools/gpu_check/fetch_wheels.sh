#!/usr/bin/env bash
# Download the GPU check's wheels (wheels.txt) for CPython 3.12 on x86-64 Linux into wheels/.
# Run it on any machine with network access; python -m tools.gpu_check then needs none.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
mkdir -p "$here/wheels"
grep -v '^\s*#' "$here/wheels.txt" | grep -v '^\s*$' | xargs "$python" -m pip download \
    --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$here/wheels"
# The project itself, pure Python: installed beside them, so the machine needs no build step.
"$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$here/wheels" "$here/../.."
du -ch "$here"/wheels/*.whl | tail -1
