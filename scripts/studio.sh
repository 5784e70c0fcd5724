#!/usr/bin/env bash
# The README's two commands:
#   scripts/studio.sh up     install what is needed, then start the whole studio on this machine
#   scripts/studio.sh test   install what is needed, then run the full test suite (SQLite, then PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LORASTUDIO_VENV:-.venv}
PY="$VENV/bin/python"

setup() {
  [ -x "$PY" ] || python3 -m venv "$VENV"
  # Re-install only when the dependencies changed.
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ".[dev]"
    touch "$stamp"
  fi
  ensure_allocator
}

ensure_allocator() {
  # Trainers run on tcmalloc where it is installed (worker/trainer/allocator.py): on the CPU they trained
  # 10-25 % faster in ~25 % less memory than on glibc's malloc (jemalloc, found on many machines, gave only the
  # memory half). Without either they still run, on the system malloc.
  if "$PY" -c "import sys; from worker.trainer.allocator import find_allocator; sys.exit(find_allocator()[0] != 'tcmalloc')" \
      2>/dev/null || ! command -v apt-get >/dev/null; then
    return 0
  fi
  apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; } \
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

ensure_browser() {
  # The browser tests drive Debian's Chromium; Playwright's own browser download is not reachable here.
  if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  fi
}

run_tests() {
  ensure_services
  ensure_browser
  "$VENV/bin/ruff" check app worker tests benchmarks scripts
  "$VENV/bin/lint-imports"
  echo "== test suite on SQLite"
  LORASTUDIO_TEST_DB=sqlite "$VENV/bin/pytest" -q tests "$@"
  echo "== database-backed tests on PostgreSQL"
  # Tests that never touch the database (trainer, JS, pure parsing, the browser, `up` with its embedded
  # SQLite) ran above; everything that reads or writes the database runs again on PostgreSQL.
  LORASTUDIO_TEST_DB=postgresql "$VENV/bin/pytest" -q tests --ignore=tests/trainer --ignore=tests/js \
    --ignore=tests/browser --ignore=tests/e2e/test_up.py \
    --ignore=tests/core/test_dataset_formats.py --ignore=tests/core/test_dataset_problems.py "$@"
}

case "${1:-}" in
  up) shift; setup; exec "$VENV/bin/lorastudio" up "$@" ;;
  test) shift; setup; run_tests "$@" ;;
  setup) setup ;;
  *) echo "usage: scripts/studio.sh up|test|setup" >&2; exit 2 ;;
esac
