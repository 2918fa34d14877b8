#!/usr/bin/env bash
# The tested cluster, started by hand on 127.0.0.1 (for demos and benchmarks):
# PostgreSQL, Redis, N `mini-llm serve --workers W` and nginx in front (deploy/nginx/nginx.conf).
#
#   deploy/local-cluster.sh start|stop|status   (status exits 0 when every process runs)
#
# State (data, logs, pid files, the master key) lives in $MINI_LLM_CLUSTER_DIR, else
# ${XDG_STATE_HOME:-~/.local/state}/mini-llm-cluster. Settings, all optional:
#   MINI_LLM_CLUSTER_PORT       nginx's port (8080)
#   MINI_LLM_CLUSTER_INSTANCES  gateway instances (3)
#   MINI_LLM_CLUSTER_WORKERS    workers per instance (2)
#   PYTHON                      the Python that has mini-llm installed (python3)
# Uses the system's redis-server, PostgreSQL from /usr/lib/postgresql/*/bin and nginx; every
# process runs in the foreground of its own session and is stopped by its pid. Run as root,
# PostgreSQL runs as `nobody` (it refuses root): the state directory must be reachable by it.
set -euo pipefail

DIR=${MINI_LLM_CLUSTER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/mini-llm-cluster}
PORT=${MINI_LLM_CLUSTER_PORT:-8080}
INSTANCES=${MINI_LLM_CLUSTER_INSTANCES:-3}
WORKERS=${MINI_LLM_CLUSTER_WORKERS:-2}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRAIN_DELAY=5  # longer than nginx's upstream keep-alive (4 s): a stop cuts no request

say() { printf '%s\n' "$*"; }
fail() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {  # port, pid, what
    local i
    for i in $(seq 1 300); do
        if ! kill -0 "$2" 2>/dev/null; then fail "$3 exited; see $DIR/$3.log"; fi
        if "$PYTHON" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    fail "$3 did not listen on port $1 within 30 s; see $DIR/$3.log"
}

wait_ready() {  # url, pid, what: every worker answers /health/ready
    local i ok=0
    for i in $(seq 1 600); do
        if ! kill -0 "$2" 2>/dev/null; then fail "$3 exited; see $DIR/$3.log"; fi
        if "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1/health/ready" 2>/dev/null; then
            ok=$((ok + 1))
            [ "$ok" -ge $((4 * WORKERS)) ] && return 0
        else
            ok=0
            sleep 0.1
        fi
    done
    fail "$3 is not ready; see $DIR/$3.log"
}

as_postgres() {  # PostgreSQL refuses to run as root: nobody then
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups "$@"
    else
        "$@"
    fi
}

# what each pid file's process must look like before we signal it (a reused pid is left alone)
looks_like() {  # name, pid
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null) || return 1
    case $1 in
        postgres) [[ $cmd == *postgres* ]] ;;
        redis) [[ $cmd == *redis-server* ]] ;;
        nginx) [[ $cmd == *nginx* ]] ;;
        gateway*) [[ $cmd == *mini_llm*serve* ]] ;;
        *) return 1 ;;
    esac
}

running() {  # name: its pid when it runs
    local pid
    [ -f "$DIR/$1.pid" ] || return 1
    pid=$(cat "$DIR/$1.pid")
    kill -0 "$pid" 2>/dev/null && looks_like "$1" "$pid" && printf '%s' "$pid"
}

names() {
    local i
    say postgres redis
    for i in $(seq 1 "$INSTANCES"); do say "gateway$i"; done
    say nginx
}

start() {
    local n
    for n in $(names); do
        if running "$n" >/dev/null; then fail "already running ($n); '$0 stop' first"; fi
    done
    command -v redis-server >/dev/null || fail "redis-server is not installed"
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || fail "nginx is not installed"
    local nginx_bin pg_bin
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$pg_bin" ] || fail "PostgreSQL is not installed (/usr/lib/postgresql/*/bin)"
    mkdir -p "$DIR/pg" "$DIR/redis" "$DIR/data"
    umask 077
    [ -s "$DIR/master-key" ] || "$PYTHON" -c 'import secrets; print("sk-" + secrets.token_urlsafe(32))' >"$DIR/master-key"
    umask 022

    # PostgreSQL
    local pg_port redis_port
    pg_port=$(free_port)
    if [ "$(id -u)" -eq 0 ]; then chown nobody "$DIR/pg"; fi
    if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
        as_postgres "$pg_bin/initdb" -D "$DIR/pg/data" -A trust -U postgres -E UTF8 --no-sync \
            >"$DIR/postgres.log" 2>&1 || fail "initdb failed; see $DIR/postgres.log"
    fi
    local pg=("$pg_bin/postgres" -D "$DIR/pg/data" -p "$pg_port" -k "$DIR/pg"
        -c listen_addresses=127.0.0.1)
    if [ "$(id -u)" -eq 0 ]; then  # setpriv execs postgres: the pid stays the same
        pg=(setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups "${pg[@]}")
    fi
    "${pg[@]}" >>"$DIR/postgres.log" 2>&1 </dev/null &
    echo $! >"$DIR/postgres.pid"
    wait_port "$pg_port" "$!" postgres
    sleep 0.3  # listening comes just before accepting logins

    # Redis
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$DIR/redis" --save "" \
        --appendonly no --daemonize no >"$DIR/redis.log" 2>&1 </dev/null &
    echo $! >"$DIR/redis.pid"
    wait_port "$redis_port" "$!" redis

    # the gateways, each in its own session (master and workers: one process group); every
    # connection comes from nginx, one address: no per-client connection cap
    local i port ports=()
    for i in $(seq 1 "$INSTANCES"); do
        port=$(free_port)
        ports+=("$port")
        MINI_LLM_MASTER_KEY=$(cat "$DIR/master-key") \
        MINI_LLM_REDIS_URL="redis://127.0.0.1:$redis_port/0" \
        MINI_LLM_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres" \
        MINI_LLM_CACHE=redis \
        MINI_LLM_DATA_DIR="$DIR/data" \
        MINI_LLM_PORT_RETRIES=0 \
        MINI_LLM_DRAIN_DELAY=$DRAIN_DELAY \
        MINI_LLM_MAX_CONNECTIONS_PER_CLIENT=0 \
        MINI_LLM_LOG_LEVEL=${MINI_LLM_LOG_LEVEL:-warning} \
            setsid "$PYTHON" -m mini_llm serve --no-state --host 127.0.0.1 --port "$port" \
            --workers "$WORKERS" >"$DIR/gateway$i.log" 2>&1 </dev/null &
        echo $! >"$DIR/gateway$i.pid"
    done
    for i in $(seq 1 "$INSTANCES"); do
        wait_ready "http://127.0.0.1:${ports[$((i - 1))]}" "$(cat "$DIR/gateway$i.pid")" "gateway$i"
    done

    # nginx, with the generated upstreams and listen lines beside its main file
    mkdir -p "$DIR/nginx"
    chmod 755 "$DIR/nginx"
    cp "$HERE/nginx/nginx.conf" "$DIR/nginx/nginx.conf"
    {
        say "upstream mini_llm {"
        say "    zone mini_llm 64k;"
        for port in "${ports[@]}"; do
            say "    server 127.0.0.1:$port max_fails=1 fail_timeout=10s;"
        done
        say "    keepalive 64;"
        say "    keepalive_timeout 4s;"
        say "}"
    } >"$DIR/nginx/upstreams.conf"
    say "listen 127.0.0.1:$PORT;" >"$DIR/nginx/listen.conf"
    setsid "$nginx_bin" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e stderr \
        >"$DIR/nginx/access.log" 2>"$DIR/nginx.log" </dev/null &
    echo $! >"$DIR/nginx.pid"
    wait_port "$PORT" "$!" nginx

    say "mini-llm cluster: $INSTANCES instances x $WORKERS workers behind nginx"
    say "  URL:         http://127.0.0.1:$PORT   (OpenAI base URL: http://127.0.0.1:$PORT/v1)"
    say "  master key:  export MINI_LLM_MASTER_KEY=\$(cat $DIR/master-key)"
    say "  state:       $DIR   (stop: $0 stop)"
}

stop_one() {  # name, signal (a gateway's master passes SIGTERM on to its workers)
    local pid
    pid=$(running "$1") || { rm -f "$DIR/$1.pid"; return 0; }
    kill "-$2" "$pid" 2>/dev/null || true
}

wait_gone() {  # name
    local pid i
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 0
    for i in $(seq 1 400); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$DIR/$1.pid"; return 0; }
        sleep 0.1
    done
    say "local-cluster: $1 (pid $pid) did not stop; killing it" >&2
    case $1 in
        gateway*) kill -KILL -- "-$pid" 2>/dev/null || true ;;  # its session: master and workers
        *) kill -KILL "$pid" 2>/dev/null || true ;;
    esac
    rm -f "$DIR/$1.pid"
}

stop() {
    local i
    # nginx first (what is under way finishes), then the instances together, then the stores
    stop_one nginx QUIT
    wait_gone nginx
    for i in $(seq 1 "$INSTANCES"); do stop_one "gateway$i" TERM; done
    for i in $(seq 1 "$INSTANCES"); do wait_gone "gateway$i"; done
    stop_one redis TERM
    stop_one postgres INT  # fast shutdown
    wait_gone redis
    wait_gone postgres
    say "mini-llm cluster stopped"
}

status() {
    local n pid up=0 down=0
    for n in $(names); do
        if pid=$(running "$n"); then
            say "$n: running (pid $pid)"
            up=$((up + 1))
        else
            say "$n: stopped"
            down=$((down + 1))
        fi
    done
    [ "$down" -eq 0 ] && [ -f "$DIR/nginx/listen.conf" ] && say "URL: http://$(sed -n 's/^listen \(.*\);$/\1/p' "$DIR/nginx/listen.conf")"
    [ "$down" -eq 0 ]
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) say "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
