#!/usr/bin/env bash
# The README's two commands:
#   scripts/studio.sh up     install what is needed, then start the whole studio on this machine
#   scripts/studio.sh test   install what is needed, then run the full test suite (SQLite, then PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LORASTUDIO_VENV:-.venv}
PY="$VENV/bin/python"

setup() {
  # $1: the extras to install. `pip install .` alone is the web app (no torch); `up` runs a worker beside it, so
  # it needs `train`; the test suite needs `train,dev`.
  local extras=$1
  if [ ! -x "$PY" ]; then
    echo "== creating the virtual environment $VENV"
    python3 -m venv "$VENV"
  fi
  # Re-install only when the dependencies or the extras asked for changed.
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras//,/-}"
  if [ ! -f "$stamp" ]; then
    echo "== upgrading pip in $VENV"
    "$PY" -m pip install -q --upgrade pip
    echo "== installing LoRA Studio and its training libraries (torch, transformers, peft …) into $VENV" \
      "— about 2 minutes on the first run, plus ~5 on 2 cores to build llama-cpp-python once (GGUF exports)"
    pip_install -e ".[$extras]"
    touch "$stamp"
    echo "== installed (pip's full output: $VENV/pip-install.log)"
  fi
  ensure_allocator
  ensure_llama_cpp_tools
}

ensure_llama_cpp_tools() {
  # GGUF exports run llama.cpp's own converters, shipped in the llama-cpp-python sdist (the same release as the
  # installed llama-cpp-python): kept once in ~/.cache/lorastudio, outside the clone.
  "$PY" -m worker.export.llama_cpp_tools where 2>/dev/null | grep -q "(complete)" && return 0
  echo "== fetching llama.cpp's GGUF converters (llama-cpp-python's sdist from PyPI)"
  "$PY" -m worker.export.llama_cpp_tools fetch >>"$VENV/pip-install.log" 2>&1 \
    || echo "note: could not fetch llama.cpp's converters; GGUF exports will fail until" \
      "\`$PY -m worker.export.llama_cpp_tools fetch\` succeeds" >&2
}

pip_install() {
  # pip install with a line per package it fetches and one per install step, so a long first install shows it is
  # moving; everything pip says goes to a log, whose end is shown if it fails.
  local log="$VENV/pip-install.log"
  if ! "$PY" -m pip install --progress-bar off "$@" 2>&1 | tee "$log" \
      | { grep --line-buffered -E '^(Collecting|Processing|Installing collected)' || true; } \
      | sed -u -e 's|^Processing .*/|Processing |' -e 's/^Installing collected packages: .*/installing them…/' \
          -e 's/^/  /'; then
    echo "pip install failed; the end of its output ($log):" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}

ensure_allocator() {
  # Trainers run on tcmalloc where it is installed (worker/planning/allocator.py): on the CPU they trained
  # 10-25 % faster in ~25 % less memory than on glibc's malloc (jemalloc, found on many machines, gave only the
  # memory half). Without either they still run, on the system malloc.
  if "$PY" -c "import sys; from worker.planning.allocator import find_allocator; sys.exit(find_allocator()[0] != 'tcmalloc')" \
      2>/dev/null || ! command -v apt-get >/dev/null; then
    return 0
  fi
  apt_install libtcmalloc-minimal4 2>/dev/null \
    || echo "note: could not install libtcmalloc-minimal4; trainers will use the system malloc" >&2
}

ensure_services() {
  # CI and developer machines run PostgreSQL and Redis as services; start them if they are down.
  if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  fi
  if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/redis-ci.log || true
  fi
}

apt_install() {
  # Debian packages the suite needs, installed only where missing (CI machines usually have them already).
  command -v apt-get >/dev/null || return 0
  apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}

ensure_test_packages() {
  # Under CI=true a suite whose requirement is missing fails instead of skipping (tests/support/requirements.py):
  # Node runs tests/js, and test_allocator checks both allocators a worker may preload.
  command -v node >/dev/null || apt_install nodejs
  "$PY" -c "import sys; from worker.planning.allocator import find_allocator; find_allocator('jemalloc')" \
      2>/dev/null || apt_install libjemalloc2
}

ensure_browser() {
  # The browser tests drive Debian's Chromium; Playwright's own browser download is not reachable here.
  [ -x /usr/bin/chromium ] || apt_install chromium
}

run_tests() {
  ensure_services
  ensure_browser
  ensure_test_packages
  "$VENV/bin/ruff" check app worker tests benchmarks scripts
  "$VENV/bin/lint-imports"
  echo "== test suite on SQLite"
  # The multi-host routing test runs in the PostgreSQL pass only: workers on several hosts share a network
  # database, never one SQLite file. --durations names the slowest tests, to keep the suite's length in view.
  LORASTUDIO_TEST_DB=sqlite "$VENV/bin/pytest" -q --durations=15 tests \
    --ignore=tests/e2e/test_device_routing_e2e.py "$@"
  echo "== database-backed tests on PostgreSQL"
  # Tests that never touch the database (trainer, JS, pure parsing, the job runner's process code, the browser,
  # `up` and the web-only install check with their own SQLite, the PostgreSQL-restart test on a private cluster of
  # its own, the GPU acceptance self-test on a SQLite fleet of its own) ran above, and so did the end-to-end tests of
  # processes and Redis whose database work is what every other end-to-end test does too (the worker pool's
  # process model, the speed calibration, the Redis outage); everything else that reads or writes the database
  # runs again on PostgreSQL.
  LORASTUDIO_TEST_DB=postgresql "$VENV/bin/pytest" -q --durations=15 tests --ignore=tests/trainer --ignore=tests/js \
    --ignore=tests/browser --ignore=tests/e2e/test_up.py --ignore=tests/test_web_install.py \
    --ignore=tests/worker/test_outcome.py --ignore=tests/worker/test_reports.py --ignore=tests/worker/test_child.py \
    --ignore=tests/worker/test_runner.py --ignore=tests/worker/test_analysis_job.py \
    --ignore=tests/core/test_dataset_formats.py --ignore=tests/core/test_dataset_problems.py \
    --ignore=tests/reliability/test_postgres_restart.py --ignore=tests/worker/test_outage.py \
    --ignore=tests/worker/test_spec_bounds.py --ignore=tests/worker/test_gpu_acceptance.py \
    --ignore=tests/e2e/test_worker_pool.py --ignore=tests/e2e/test_calibration.py \
    --ignore=tests/e2e/test_redis_outage.py "$@"
}

case "${1:-}" in
  up) shift; setup train; exec "$VENV/bin/lorastudio" up "$@" ;;
  test) shift; setup train,dev; run_tests "$@" ;;
  setup) setup train,dev ;;
  *) echo "usage: scripts/studio.sh up|test|setup" >&2; exit 2 ;;
esac
