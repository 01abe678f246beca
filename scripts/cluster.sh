#!/usr/bin/env bash
# scripts/cluster.sh up|down|status — two relay instances behind Debian's nginx on loopback,
# sharing this machine's PostgreSQL and Redis: the README's "Deploying" set-up, small.
#
#   up      creates the database if missing, runs migrations once, starts both instances and
#           nginx, waits for /readyz through nginx and prints its URL (the last line on stdout)
#   down    stops everything `up` started (by the pids in the run directory)
#   status  shows what is running
#
# Settings (environment; every other RELAY_* variable, OPENAI_API_KEY and ANTHROPIC_API_KEY pass
# through to both instances, e.g. RELAY_OPENAI_BASE_URL / RELAY_ANTHROPIC_BASE_URL):
#   RELAY_CLUSTER_DIR      run directory: nginx config, pid files, logs   (/tmp/relay-cluster-$UID)
#   RELAY_CLUSTER_PORT     nginx's port on 127.0.0.1                       (8090)
#   RELAY_CLUSTER_PORT_A, RELAY_CLUSTER_PORT_B   the instances' ports      (8091, 8092)
#   RELAY_CLUSTER_PG       the PostgreSQL server                (postgresql+psycopg://postgres@127.0.0.1:5432)
#   RELAY_CLUSTER_DB       its database, created if missing                (relay_cluster)
#   RELAY_REDIS_URL        shared limiter                                  (redis://127.0.0.1:6379/0)
#   RELAY_REDIS_PREFIX     this cluster's key namespace in it              (relay-cluster:)
#   RELAY_SECRET_KEY, RELAY_ADMIN_KEY   shared by both instances; generated once into the run
#                          directory (mode 0600) when unset
#   RELAY_ENV              production (internal BYOK base URLs refused, no `dev` account)
#   NGINX                  the nginx binary (nginx on PATH, else /usr/sbin/nginx)
#   RELAY_BIN              the relay command (.venv/bin/relay)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${RELAY_CLUSTER_DIR:-${TMPDIR:-/tmp}/relay-cluster-$(id -u)}
PORT=${RELAY_CLUSTER_PORT:-8090}
PORT_A=${RELAY_CLUSTER_PORT_A:-8091}
PORT_B=${RELAY_CLUSTER_PORT_B:-8092}
PG_SERVER=${RELAY_CLUSTER_PG:-postgresql+psycopg://postgres@127.0.0.1:5432}
DB_NAME=${RELAY_CLUSTER_DB:-relay_cluster}
RELAY_BIN=${RELAY_BIN:-$ROOT/.venv/bin/relay}
PYTHON=${RELAY_CLUSTER_PYTHON:-$(dirname "$RELAY_BIN")/python}
READY_TIMEOUT_S=${RELAY_CLUSTER_READY_TIMEOUT_S:-90}
URL="http://127.0.0.1:$PORT"
INSTANCES=(a b)

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

nginx_bin() {
  if [[ -n "${NGINX:-}" ]]; then echo "$NGINX"
  elif command -v nginx >/dev/null 2>&1; then command -v nginx
  elif [[ -x /usr/sbin/nginx ]]; then echo /usr/sbin/nginx
  else die "nginx not found: apt-get install -y nginx (or set NGINX)"; fi
}

# pid from a pid file, when that process is alive and is what we started there (not a reused pid).
live_pid() {
  local file=$1 expect=$2 pid
  [[ -f "$file" ]] || return 1
  pid=$(tr -dc 0-9 <"$file")
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$expect" || return 1
  echo "$pid"
}

stop_pids() {  # TERM, up to $1 seconds to finish (relay drains its settlements), then KILL
  local wait_s=$1 pid i alive; shift
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && return 0
    sleep 0.1
  done
  say "still running after ${wait_s}s; killing: $*"
  kill -KILL "$@" 2>/dev/null || true
}

down() {
  local pid name relays=()
  # nginx first, so no new request reaches an instance that is stopping.
  if pid=$(live_pid "$RUN_DIR/nginx.pid" nginx); then
    stop_pids 10 "$pid"
    say "nginx stopped"
  fi
  for name in "${INSTANCES[@]}"; do
    if pid=$(live_pid "$RUN_DIR/relay-$name.pid" relay); then relays+=("$pid"); fi
  done
  if ((${#relays[@]})); then
    stop_pids 30 "${relays[@]}"
    say "relay instances stopped (pids ${relays[*]})"
  fi
  rm -f "$RUN_DIR/nginx.pid" "$RUN_DIR"/relay-*.pid
}

status() {
  local pid name running=0
  for name in nginx relay-a relay-b; do
    if pid=$(live_pid "$RUN_DIR/$name.pid" "${name%-*}"); then
      echo "$name: running (pid $pid)"; running=1
    else
      echo "$name: stopped"
    fi
  done
  [[ $running == 1 ]] && echo "url: $URL"
  return 0
}

# A secret shared by both instances: the environment's, else one generated once into the run dir.
shared_secret() {
  local var=$1 file="$RUN_DIR/$2"
  if [[ -n "${!var:-}" ]]; then return; fi
  if [[ ! -s "$file" ]]; then
    (umask 077 && "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file")
  fi
  export "$var=$(cat "$file")"
  say "$var from $file"
}

# Creates the database when missing; prints the relay's URL for it.
database_url() {
  "$PYTHON" - "$PG_SERVER" "$DB_NAME" <<'PY'
import sys

import psycopg
from psycopg import errors, sql
from sqlalchemy.engine import make_url

server, name = sys.argv[1], sys.argv[2]
url = make_url(server).set(database=name)
plain = make_url(server).set(drivername="postgresql", database="postgres")
try:
    with psycopg.connect(plain.render_as_string(hide_password=False), autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"cluster: created database {name}", file=sys.stderr)
            except errors.DuplicateDatabase:
                pass
except psycopg.OperationalError as exc:
    sys.exit(f"cluster: PostgreSQL unreachable at {plain.render_as_string()}: {exc}")
print(url.render_as_string(hide_password=False))
PY
}

write_nginx_conf() {
  mkdir -p "$RUN_DIR/nginx/tmp"
  cat >"$RUN_DIR/nginx/nginx.conf" <<EOF
# Generated by scripts/cluster.sh; run with: nginx -p $RUN_DIR/nginx/ -c nginx.conf
daemon off;
worker_processes 2;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx/error.log warn;
events { worker_connections 4096; }

http {
    access_log $RUN_DIR/nginx/access.log;
    client_body_temp_path $RUN_DIR/nginx/tmp/body;
    proxy_temp_path $RUN_DIR/nginx/tmp/proxy;
    fastcgi_temp_path $RUN_DIR/nginx/tmp/fastcgi;
    uwsgi_temp_path $RUN_DIR/nginx/tmp/uwsgi;
    scgi_temp_path $RUN_DIR/nginx/tmp/scgi;

    upstream relay {
        server 127.0.0.1:$PORT_A max_fails=3 fail_timeout=5s;
        server 127.0.0.1:$PORT_B max_fails=3 fail_timeout=5s;
        keepalive 64;
    }

    server {
        listen 127.0.0.1:$PORT;
        # The relay enforces its own limits (RELAY_MAX_BODY_BYTES, 20 MiB multipart uploads).
        client_max_body_size 25m;

        location / {
            proxy_pass http://relay;
            proxy_http_version 1.1;           # keep-alive to the instances, chunked streams
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_buffering off;              # SSE events reach the client as they arrive
            proxy_request_buffering off;
            proxy_connect_timeout 5s;
            proxy_send_timeout 3600s;
            proxy_read_timeout 3600s;         # a stream may be silent for minutes (reasoning models)
            # Only connection failures move on to the other instance: nginx never replays a POST
            # that an instance may already have billed (non_idempotent is not set).
            proxy_next_upstream error timeout;
        }
    }
}
EOF
}

http_ok() {  # 200 from $1?
  if command -v curl >/dev/null 2>&1; then
    [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1") == 200 ]]
  else
    "$PYTHON" -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)' "$1"
  fi
}

wait_ready() {  # url, name, pid file, expected command
  local url=$1 name=$2 deadline=$((SECONDS + READY_TIMEOUT_S))
  until http_ok "$url/readyz"; do
    if ! live_pid "$3" "$4" >/dev/null; then
      say "$name exited; the end of its log:"
      tail -n 30 "$5" >&2 || true
      return 1
    fi
    ((SECONDS < deadline)) || { say "$name not ready at $url/readyz after ${READY_TIMEOUT_S}s"; return 1; }
    sleep 0.2
  done
}

up() {
  local name port pid nginx db_url
  mkdir -p "$RUN_DIR"
  for name in nginx relay-a relay-b; do
    if pid=$(live_pid "$RUN_DIR/$name.pid" "${name%-*}"); then
      die "already up ($name pid $pid in $RUN_DIR): scripts/cluster.sh down first"
    fi
  done
  [[ -x "$RELAY_BIN" ]] || die "$RELAY_BIN missing: run 'make install' first (or set RELAY_BIN)"
  nginx=$(nginx_bin)

  export LITELLM_LOCAL_MODEL_COST_MAP=${LITELLM_LOCAL_MODEL_COST_MAP:-True}
  export RELAY_ENV=${RELAY_ENV:-production}
  export RELAY_REDIS_URL=${RELAY_REDIS_URL:-redis://127.0.0.1:6379/0}
  export RELAY_REDIS_PREFIX=${RELAY_REDIS_PREFIX:-relay-cluster:}
  shared_secret RELAY_SECRET_KEY secret_key
  shared_secret RELAY_ADMIN_KEY admin_key
  db_url=$(database_url) || exit 1
  export RELAY_DATABASE_URL=$db_url

  say "migrating $DB_NAME (once, before the instances start)"
  (cd "$ROOT" && "$RELAY_BIN" db upgrade >"$RUN_DIR/migrate.log" 2>&1) \
    || { tail -n 30 "$RUN_DIR/migrate.log" >&2; die "migration failed"; }

  trap 'say "start-up failed; stopping what was started"; down' ERR
  for name in "${INSTANCES[@]}"; do
    port=$PORT_A; [[ $name == b ]] && port=$PORT_B
    (cd "$ROOT" && exec nohup "$RELAY_BIN" serve --host 127.0.0.1 --port "$port" \
      </dev/null >"$RUN_DIR/relay-$name.log" 2>&1) &
    echo $! >"$RUN_DIR/relay-$name.pid"
    say "relay $name on 127.0.0.1:$port (pid $!, log $RUN_DIR/relay-$name.log)"
  done

  write_nginx_conf
  "$nginx" -t -q -p "$RUN_DIR/nginx/" -c nginx.conf -e "$RUN_DIR/nginx/error.log"
  (exec nohup "$nginx" -p "$RUN_DIR/nginx/" -c nginx.conf -e "$RUN_DIR/nginx/error.log" \
    </dev/null >>"$RUN_DIR/nginx/error.log" 2>&1) &
  echo $! >"$RUN_DIR/nginx.pid"  # nginx rewrites it with the same pid (daemon off)

  wait_ready "http://127.0.0.1:$PORT_A" "relay a" "$RUN_DIR/relay-a.pid" relay "$RUN_DIR/relay-a.log"
  wait_ready "http://127.0.0.1:$PORT_B" "relay b" "$RUN_DIR/relay-b.pid" relay "$RUN_DIR/relay-b.log"
  wait_ready "$URL" nginx "$RUN_DIR/nginx.pid" nginx "$RUN_DIR/nginx/error.log"
  trap - ERR
  say "up: nginx → 127.0.0.1:$PORT_A, 127.0.0.1:$PORT_B; database $DB_NAME; redis prefix $RELAY_REDIS_PREFIX"
  echo "$URL"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
