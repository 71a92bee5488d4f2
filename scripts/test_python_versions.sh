#!/usr/bin/env bash
# Run simxray's fast test tier (pytest -m "not slow") under several Python versions.
#
#   scripts/test_python_versions.sh [VERSION ...]     # default: 3.10 3.12
#   make test-matrix                                  # the same
#
# For each VERSION (e.g. 3.10) it creates .venv-py310 (git-ignored) with that interpreter
# (the newest $PYENV_ROOT/versions/3.10.*, else python3.10 on PATH), installs torch 2.13.0
# first, then simxray editable with the extras ml,dask,tables,dev (+ sherpa,bench with
# WITH_SHERPA=1: Sherpa has no wheels on PyPI and compiles from source for several
# minutes per Python; needs bison flex libfftw3-dev pkg-config, scripts/install_sysdeps.sh),
# and runs the tier. Tests that need Sherpa skip themselves when it is absent.
#
# Environment:
#   WITH_SHERPA=0|1     install Sherpa (default 0)
#   TORCH_INDEX_URL=URL an index for torch, e.g. https://download.pytorch.org/whl/cpu (CPU
#                       build, ~200 MB); default: the configured indexes (PyPI's torch for
#                       cp310/cp312 is the CUDA build, ~4 GB with its nvidia-* wheels, and
#                       runs on the CPU; the CPU cp311 wheel in /opt/wheels where present)
#   PYTEST_ARGS         extra pytest arguments (default: none, so pyproject's per-test timeout
#                       of 900 s applies; with timeout_method=thread a timeout ends the run)
#   MARK                pytest marker expression (default: "not slow")
#   TESTS               test paths (default: tests), e.g. "tests/test_sherpa_model.py"
#   PIP_FIND_LINKS      pip's own variable: add a folder of prebuilt wheels (e.g. Sherpa
#                       built once with `pip wheel sherpa==4.19.0 -w DIR`), keeping
#                       /opt/wheels: PIP_FIND_LINKS="/opt/wheels DIR"
#   OUT                 result folder (default: build/test-matrix)
# Results: $OUT/py3XX.log (pytest output), $OUT/py3XX.xml (JUnit) and one line per run
# appended to $OUT/summary.tsv (date, python, torch, numpy, sherpa, tier, counts, rc).
# Exit status: 0 when every version passed, 1 otherwise.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
WITH_SHERPA="${WITH_SHERPA:-0}"
MARK="${MARK:-not slow}"
PYTEST_ARGS="${PYTEST_ARGS:-}"
OUT="${OUT:-build/test-matrix}"
TESTS="${TESTS:-tests}"
mkdir -p "$OUT"
VERSIONS=("$@")
[ ${#VERSIONS[@]} -eq 0 ] && VERSIONS=(3.10 3.12)

find_python() {  # a working interpreter for version $1 (3.10), or nothing
    local v="$1" p
    p="$(ls -d "$PYENV_ROOT"/versions/"$v".* 2>/dev/null | sort -V | tail -1)"
    [ -n "$p" ] && p="$p/bin/python$v"
    [ -n "$p" ] && [ -x "$p" ] || p="$(command -v "python$v" 2>/dev/null)"
    # pyenv shims exist for every version but run only the active ones: check it runs.
    [ -n "$p" ] && "$p" -c 'import sys' >/dev/null 2>&1 && echo "$p"
}

status=0
for v in "${VERSIONS[@]}"; do
    tag="py${v//./}"
    venv="$ROOT/.venv-$tag"
    log="$OUT/$tag.log"
    py="$(find_python "$v")"
    if [ -z "$py" ]; then
        echo "error: no Python $v found (PATH or $PYENV_ROOT/versions); skipped" >&2
        status=1
        continue
    fi
    extras="ml,dask,tables,dev"
    [ "$WITH_SHERPA" = 1 ] && extras="$extras,sherpa,bench"
    stamp="$venv/.install-ok"
    want="$(sha256sum pyproject.toml | cut -c1-16) $extras ${TORCH_INDEX_URL:-}"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "== $tag: installing into $venv ($py, extras $extras)"
        [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || { status=1; continue; }
        vpy="$venv/bin/python"
        "$vpy" -m pip install -q --upgrade pip setuptools wheel || { status=1; continue; }
        if [ -n "${TORCH_INDEX_URL:-}" ]; then
            "$vpy" -m pip install -q torch==2.13.0 --index-url "$TORCH_INDEX_URL" || { status=1; continue; }
        else
            "$vpy" -m pip install -q torch==2.13.0 || { status=1; continue; }
        fi
        nice -n 19 "$vpy" -m pip install -q -e ".[$extras]" || { status=1; continue; }
        echo "$want" > "$stamp"
    fi
    vpy="$venv/bin/python"
    versions="$("$vpy" - <<'EOF'
import platform, importlib.metadata as md
def v(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return "absent"
print(platform.python_version(), v("torch"), v("numpy"), v("sherpa"), sep="\t")
EOF
)"
    echo "== $tag: pytest -m \"$MARK\" ($versions) -> $log"
    start=$(date +%s)
    # shellcheck disable=SC2086  # TESTS and PYTEST_ARGS split on spaces on purpose
    nice -n 19 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MPLBACKEND=Agg \
        "$vpy" -m pytest -q $TESTS -m "$MARK" -p no:cacheprovider \
        --junitxml="$OUT/$tag.xml" $PYTEST_ARGS > "$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    counts="$(grep -E '^=* ?[0-9]+ (passed|failed|error)|^=* ?(passed|failed|no tests)' "$log" | tail -1 \
        | sed 's/^=* *//; s/ *=*$//')"
    [ -n "$counts" ] || counts="aborted ($(grep -c Timeout "$log") timeout marks; see $log)"
    printf '%s\t%s\t%s\t%s\t%s\trc=%s\t%ss\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$tag" "$versions" \
        "$TESTS -m '$MARK'" "$counts" "$rc" "$secs" >> "$OUT/summary.tsv"
    echo "== $tag: rc=$rc $counts (${secs} s)"
    [ "$rc" -eq 0 ] || status=1
done
exit $status
