#!/usr/bin/env bash
# Build simxray's wheel, install it into a fresh virtual environment with its
# dependencies, and run `simxray demo` from a folder outside the checkout.
#
#   scripts/check_wheel_install.sh            # or: make check-wheel
#
# Steps: copy the working tree's files (tracked and untracked-not-ignored, so stale
# build/ or egg-info folders cannot leak into the wheel) to a scratch folder; build the
# wheel there with `pip wheel --no-deps` (isolated build); create a venv with no system
# site-packages; install torch==2.13.0 first (the CPU wheel where pip's find-links has it;
# a bare `torch` from PyPI is the CUDA build), then the wheel with the extras $EXTRAS and
# all dependencies from the configured indexes; check that `import simxray` resolves
# inside the venv; run `simxray demo --out demo --n $DEMO_N` in an empty folder and check
# its summary.
#
# Environment:
#   PY=python3.11      base interpreter (default: the one .venv was made from, else python3)
#   EXTRAS=ml          extras to install with the wheel (ml: emcee, sbi, ultranest, ...;
#                      sherpa is left out by default: it compiles from source for minutes)
#   DEMO_N=64          spectra in the demo's simulation campaign
#   WORK=DIR           scratch folder (default: a new mktemp -d; removed unless KEEP=1)
#   OUT=DIR            where the log and result line go (default build/wheel-check)
# Exit status: 0 when the demo ran and wrote its fit summary, else non-zero.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [ -z "${PY:-}" ]; then
    PY="$(sed -n 's/^executable = //p' .venv/pyvenv.cfg 2>/dev/null || true)"
    [ -x "$PY" ] || PY="$(command -v python3)"
fi
EXTRAS="${EXTRAS:-ml}"
DEMO_N="${DEMO_N:-64}"
OUT="${OUT:-build/wheel-check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="${WORK:-$(mktemp -d /tmp/simxray-wheel.XXXXXX)}"
mkdir -p "$WORK"
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
LOG="$OUT/check.log"
: > "$LOG"
t0=$(date +%s)
step() { echo "== $(( $(date +%s) - t0 )) s: $*" | tee -a "$LOG"; }

step "copy the source tree to $WORK/src"
mkdir -p "$WORK/src"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar -C "$ROOT" --null -T - -cf - | tar -C "$WORK/src" -xf -

step "build the wheel ($PY)"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src" >> "$LOG" 2>&1
WHEEL="$(ls "$WORK"/dist/simxray-*.whl)"
step "built $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"

step "fresh venv"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip >> "$LOG" 2>&1
step "install torch==2.13.0"
"$VPY" -m pip install -q torch==2.13.0 >> "$LOG" 2>&1
step "install the wheel with [$EXTRAS] and its dependencies"
"$VPY" -m pip install -q "${WHEEL}[$EXTRAS]" >> "$LOG" 2>&1
t_install=$(( $(date +%s) - t0 ))

mkdir -p "$WORK/run"
cd "$WORK/run"
where="$(env -u PYTHONPATH "$VPY" -c 'import simxray, torch; print(simxray.__file__, torch.__version__)')"
step "import simxray: $where"
case "$where" in "$WORK/venv/"*) ;; *) echo "error: simxray not imported from the venv" | tee -a "$LOG"; exit 1;; esac

step "simxray demo --out demo --n $DEMO_N (in $WORK/run)"
set +e
env -u PYTHONPATH OMP_NUM_THREADS=1 MPLBACKEND=Agg "$WORK/venv/bin/simxray" demo --out demo \
    --n "$DEMO_N" >> "$LOG" 2>&1
rc=$?
set -e
summary="$WORK/run/demo/fit/walkthrough_1-7keV/summary.json"
if [ $rc -eq 0 ] && [ -f "$summary" ]; then
    result="pass"
else
    result="FAIL (rc=$rc)"
fi
total=$(( $(date +%s) - t0 ))
step "demo: $result"
line="$(date -u +%Y-%m-%dT%H:%MZ)	$(basename "$WHEEL")	python $("$VPY" -c 'import platform; print(platform.python_version())')	extras [$EXTRAS]	install ${t_install} s	total ${total} s	$result"
echo "$line" | tee -a "$OUT/results.tsv"
[ "$result" = "pass" ]
