#!/usr/bin/env bash
# Run Switchboard on this machine: install into .venv, migrate the SQLite database in
# instance/, make sure Redis answers, start the web app, one RQ worker (with scheduler)
# and `rq cron`. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
trap stop_started EXIT INT TERM

export PORT=${PORT:-5000}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}
export ALLOW_PRIVATE_NETWORK=${ALLOW_PRIVATE_NETWORK:-1}  # a local SMTP relay is common on one server

ensure_venv requirements.txt
ensure_redis "$REDIS_URL"
echo "==> Applying database migrations"
.venv/bin/flask --app wsgi db upgrade

.venv/bin/python worker.py &
STARTED_PIDS+=("$!")
.venv/bin/rq cron app/cron_config.py --url "$REDIS_URL" &
STARTED_PIDS+=("$!")
.venv/bin/gunicorn --bind "127.0.0.1:$PORT" --workers 2 --threads 4 --access-logfile - wsgi:app &
STARTED_PIDS+=("$!")

echo
echo "Switchboard is running at http://127.0.0.1:$PORT  (first visit: create your organisation)"
echo "Press Ctrl-C to stop."
wait -n
