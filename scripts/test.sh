#!/usr/bin/env bash
# Run the whole test suite: install into .venv (with test tools), make sure Redis and
# Chromium are there, then pytest. Arguments go to pytest.
#   TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test scripts/test.sh   runs on PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
trap stop_started EXIT INT TERM

ensure_venv requirements-dev.txt

export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
if ! redis_answers "$TEST_REDIS_URL"; then
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_redis "$port"
  export TEST_REDIS_URL="redis://127.0.0.1:$port/15"
fi

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> Installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "The browser tests need Chromium at /usr/bin/chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
fi

echo "==> pytest on ${TEST_DATABASE_URL:-SQLite}"
status=0
.venv/bin/python -m pytest "$@" || status=$?
exit $status  # pytest's 5 (no tests ran) fails too
