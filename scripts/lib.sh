# Shared set-up steps for scripts/run.sh and scripts/test.sh (sourced, not run).

# Create .venv and install a requirements file; reinstall only when the file changes.
ensure_venv() {
  local requirements=$1 python=${PYTHON:-python3}
  if ! command -v "$python" >/dev/null 2>&1; then
    echo "Python 3.11+ is needed: install it (Debian/Ubuntu: sudo apt-get install python3 python3-venv)." >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "==> Creating the virtual environment in .venv"
    "$python" -m venv .venv || { echo "Could not create a venv (Debian/Ubuntu: sudo apt-get install python3-venv)." >&2; exit 1; }
  fi
  local stamp=".venv/.installed-$(cat "$requirements" requirements.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "==> Installing $requirements"
    # This machine's pip config names local mirrors that may be absent: drop those warnings only.
    .venv/bin/python -m pip install --quiet -r "$requirements" 2> >(grep -v "is ignored: it is neither" >&2)
    rm -f .venv/.installed-* && touch "$stamp"
  fi
}

redis_answers() {
  .venv/bin/python - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

# Make sure a Redis answers at $1; start a local redis-server on that port if it does not.
# Prints the URL to use (the same one).
ensure_redis() {
  local url=$1
  if redis_answers "$url"; then return 0; fi
  local hostport=${url#redis://}; hostport=${hostport%%/*}; hostport=${hostport##*@}
  local host=${hostport%%:*} port=${hostport##*:}
  [ "$port" = "$hostport" ] && port=6379
  if [ "$host" != "127.0.0.1" ] && [ "$host" != "localhost" ]; then
    echo "No Redis answers at $url and it is not a local address: start it, or set REDIS_URL." >&2
    exit 1
  fi
  start_redis "$port"
  redis_answers "$url" || { echo "redis-server did not start on port $port (see instance/redis.log)." >&2; exit 1; }
}

# Start a redis-server that keeps nothing on disk; it stops when this script exits.
start_redis() {
  local port=$1
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "No Redis answers and redis-server is not installed. Install it, then run this again:" >&2
    echo "    Debian/Ubuntu: sudo apt-get install redis-server" >&2
    echo "    macOS:         brew install redis" >&2
    echo "or point REDIS_URL at a Redis you have." >&2
    exit 1
  fi
  mkdir -p instance
  echo "==> Starting redis-server on 127.0.0.1:$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$PWD/instance" \
    --logfile "$PWD/instance/redis-$port.log" --daemonize no &
  STARTED_PIDS+=("$!")
  for _ in $(seq 50); do redis_answers "redis://127.0.0.1:$port/0" && return 0; sleep 0.1; done
}

STARTED_PIDS=()
stop_started() {
  for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
