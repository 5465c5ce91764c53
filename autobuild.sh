#!/usr/bin/env bash
# autobuild.sh: build, run and test ChatServer.
#
#   ./autobuild.sh          cargo build --release; copy target/release/Chat* into bin/
#   ./autobuild.sh up       MariaDB, Redis, two ChatServers (6000, 6002), nginx on 8000
#   ./autobuild.sh status   what `up` started: each server and nginx, pid, address, users online
#   ./autobuild.sh down     stop what `up` started: the servers first, then nginx
#   ./autobuild.sh test     fmt + clippy, services, build, cargo test --release [ARGS...]
#
# Environment of `up` (and of `status` and `down` for CHAT_RUN_DIR):
#   CHAT_IP="127.0.0.1"      address of the servers and of nginx
#   CHAT_PORTS="6000 6002"   one ChatServer per port
#   CHAT_NGINX_PORT=8000     where nginx balances over them
#   CHAT_THREADS=            --threads of each server (empty: its default, one per core)
#   CHAT_DB_POOL, CHAT_REDIS_URL, CHAT_STATS_INTERVAL ...: passed on to the servers
#   CHAT_RUN_DIR=run         logs (appended across restarts), pid files, up.env, mysql.env
#   CHAT_BIN_DIR=            run the ChatServer found there instead of building bin/
#
# Database URL: $CHAT_MYSQL_URL if set; else mysql://root@127.0.0.1:3306/chat
# if root may log in over TCP; else a `chat` account with a random password,
# created through root's unix socket and kept in run/mysql.env (mode 600).
# run/ holds logs, pid files and mysql.env; it is not committed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN_DIR="${CHAT_BIN_DIR:-$ROOT/bin}"
RUN_DIR="${CHAT_RUN_DIR:-$ROOT/run}"
[[ "$RUN_DIR" = /* ]] || RUN_DIR="$ROOT/$RUN_DIR"
MYSQL_ENV="$RUN_DIR/mysql.env"
UP_ENV="$RUN_DIR/up.env"
DEFAULT_MYSQL_URL="mysql://root@127.0.0.1:3306/chat"
DB_HOST=127.0.0.1
DB_PORT=3306
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
SERVER_IP="${CHAT_IP:-127.0.0.1}"
SERVER_PORTS="${CHAT_PORTS:-6000 6002}"
NGINX_PORT="${CHAT_NGINX_PORT:-8000}"
SERVER_THREADS="${CHAT_THREADS:-}"
NGINX_DIR="$RUN_DIR/nginx"
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
PACKAGES_DB="mariadb-server mariadb-client"
PACKAGES_REDIS="redis-server"
PACKAGES_NGINX="nginx libnginx-mod-stream"

log() { printf '[autobuild] %s\n' "$*" >&2; }
die() {
    printf '[autobuild] ERROR: %s\n' "$*" >&2
    exit 1
}
is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------- rust/build

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 && return 0
    cat >&2 <<'EOF'
[autobuild] ERROR: cargo (Rust) is not installed. Install it with rustup:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . "$HOME/.cargo/env"
then run this script again.
EOF
    exit 1
}

target_dir() {
    local dir="${CARGO_TARGET_DIR:-target}"
    [[ "$dir" = /* ]] || dir="$ROOT/$dir"
    printf '%s\n' "$dir"
}

# cargo build --release, then every target/release/Chat* executable into bin/.
build() {
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed (errors above)"
    mkdir -p "$BIN_DIR"
    local exe name copied=()
    for exe in "$(target_dir)"/release/Chat*; do
        [[ -f "$exe" && -x "$exe" ]] || continue
        name="$(basename "$exe")"
        # Copy, then rename over: works while the old binary is running.
        cp "$exe" "$BIN_DIR/.$name.tmp"
        mv -f "$BIN_DIR/.$name.tmp" "$BIN_DIR/$name"
        copied+=("bin/$name")
    done
    [[ ${#copied[@]} -gt 0 ]] || die "no target/release/Chat* executables after the build"
    log "built: ${copied[*]}"
    build_limit_relay
}

# The raw C relay ChatBench compares the server with (`--relay limit`), from
# ../shared when it is there; built as its README says. Optional: only the
# benchmarks use it.
build_limit_relay() {
    local src="$ROOT/../shared/limit-relay/relay.c"
    [[ -f "$src" ]] || return 0
    if ! command -v gcc >/dev/null; then
        log "gcc not found: bin/limit-relay not built (ChatBench --relay limit needs it)"
        return 0
    fi
    if gcc -O2 -Wall -Wextra -pthread -o "$BIN_DIR/.limit-relay.tmp" "$src"; then
        mv -f "$BIN_DIR/.limit-relay.tmp" "$BIN_DIR/limit-relay"
        log "built: bin/limit-relay (from ../shared/limit-relay)"
    else
        log "bin/limit-relay did not build (errors above); ChatBench --relay limit needs it"
    fi
}

check_fmt() {
    log "cargo fmt --check"
    (cd "$ROOT" && cargo fmt --check) ||
        die "code is not formatted: run \`cargo fmt\` and commit the result"
}

check_clippy() {
    log "cargo clippy --all-targets --release -- -D warnings"
    (cd "$ROOT" && cargo clippy --all-targets --release -- -D warnings) ||
        die "clippy found problems (above); fix them first"
}

# ---------------------------------------------------------------- packages

# apt-get install "$@" as root; otherwise print the command and fail.
apt_install() {
    if ! is_root; then
        die "missing packages; run as root:  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $*"
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    log "apt-get install -y $*"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "$@"; then
        log "install failed; apt-get update and retry"
        apt-get update
        apt-get install -y "$@"
    fi
}

# Path of the MariaDB/MySQL server daemon, empty if none.
mariadb_daemon() {
    local d
    for d in mariadbd mysqld; do
        if command -v "$d" >/dev/null 2>&1; then
            command -v "$d"
            return 0
        fi
        if [[ -x "/usr/sbin/$d" ]]; then
            printf '/usr/sbin/%s\n' "$d"
            return 0
        fi
    done
}

# Name of the MariaDB/MySQL command-line client, empty if none.
mysql_client() {
    local c
    for c in mariadb mysql; do
        if command -v "$c" >/dev/null 2>&1; then
            printf '%s\n' "$c"
            return 0
        fi
    done
}

# Installs the MariaDB server and client if either is missing.
ensure_mariadb_installed() {
    if [[ -z "$(mariadb_daemon)" || -z "$(mysql_client)" ]]; then
        # shellcheck disable=SC2086
        apt_install $PACKAGES_DB
    fi
}

ensure_redis_installed() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        apt_install $PACKAGES_REDIS
    fi
}

ensure_nginx_installed() {
    if [[ ! -x /usr/sbin/nginx ]] && ! command -v nginx >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        apt_install $PACKAGES_NGINX
    elif [[ ! -f "$STREAM_MODULE" ]] && ! nginx -V 2>&1 | grep -q -- --with-stream; then
        apt_install libnginx-mod-stream
    fi
}

nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

# ---------------------------------------------------------------- services

# Whether HOST PORT accepts a TCP connection (within 2 s).
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# Whether MariaDB answers on 127.0.0.1:3306 (even "access denied" counts).
mariadb_alive() {
    local admin
    for admin in mariadb-admin mysqladmin; do
        if command -v "$admin" >/dev/null 2>&1; then
            timeout 5 "$admin" --connect-timeout=2 -h"$DB_HOST" -P"$DB_PORT" ping >/dev/null 2>&1
            return
        fi
    done
    port_open "$DB_HOST" "$DB_PORT"
}

# Polls `$@` every 0.5 s for up to $1 seconds; 0 once it succeeds.
wait_for() {
    local secs="$1" i
    shift
    for ((i = 0; i < secs * 2; i++)); do
        "$@" && return 0
        sleep 0.5
    done
    return 1
}

start_mariadb() {
    is_root || die "MariaDB is not running; start it as root:  sudo service mariadb start"
    log "starting MariaDB"
    if timeout 60 service mariadb start >/dev/null 2>&1 && wait_for 30 mariadb_alive; then
        return 0
    fi
    log "service mariadb start did not work; trying start-stop-daemon"
    local daemon
    daemon="$(mariadb_daemon)"
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$daemon" -- --user=mysql
}

# MariaDB installed, running and answering on 127.0.0.1:3306.
ensure_mariadb() {
    if [[ -n "${CHAT_MYSQL_URL:-}" ]] && ! url_is_local "$CHAT_MYSQL_URL"; then
        log "CHAT_MYSQL_URL points to another host; not managing a local MariaDB"
        return 0
    fi
    ensure_mariadb_installed
    mariadb_alive && return 0
    start_mariadb
    wait_for 60 mariadb_alive ||
        die "MariaDB does not answer on $DB_HOST:$DB_PORT (see /var/log/mysql/ or journalctl)"
    log "MariaDB is up"
}

url_is_local() {
    [[ "$1" =~ ^mysql://([^@/]*@)?(127\.0\.0\.1|localhost|\[::1\])(:3306)?(/|$|\?) ]]
}

redis_alive() {
    [[ "$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

# Redis installed, running and answering on 127.0.0.1:6379. Returns 1 (after
# saying why) if that cannot be done; the caller decides whether it is fatal.
ensure_redis() {
    if [[ -n "${CHAT_REDIS_URL:-}" && ! "$CHAT_REDIS_URL" =~ ^redis://(127\.0\.0\.1|localhost)(:6379)?(/|$) ]]; then
        log "CHAT_REDIS_URL points elsewhere; not managing a local Redis"
        return 0
    fi
    ensure_redis_installed
    redis_alive && return 0
    log "starting Redis"
    local dir=/var/lib/redis logfile=/var/log/redis/ci.log
    if ! is_root; then
        dir="$RUN_DIR"
        logfile="$RUN_DIR/redis.log"
    fi
    mkdir -p "$dir" "$(dirname "$logfile")"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
        --save "" --appendonly no --dir "$dir" --logfile "$logfile" ||
        log "redis-server failed to start (log: $logfile)"
    if ! wait_for 20 redis_alive; then
        log "Redis does not answer on $REDIS_HOST:$REDIS_PORT (log: $logfile)"
        return 1
    fi
    log "Redis is up"
}

# ---------------------------------------------------------------- database URL

# Runs the MariaDB client as user $1 with password $2 over TCP, rest as args.
mysql_tcp() {
    local user="$1" pass="$2"
    shift 2
    if [[ -n "$pass" ]]; then
        # Through the environment: a password on the command line shows in ps.
        MYSQL_PWD="$pass" timeout 20 "$(mysql_client)" --connect-timeout=5 \
            -h"$DB_HOST" -P"$DB_PORT" -u"$user" "$@"
    else
        timeout 20 "$(mysql_client)" --connect-timeout=5 \
            -h"$DB_HOST" -P"$DB_PORT" -u"$user" "$@"
    fi
}

root_tcp_works() {
    mysql_tcp root "" -e 'select 1' >/dev/null 2>&1
}

root_socket_works() {
    is_root && timeout 20 "$(mysql_client)" --connect-timeout=5 -uroot -e 'select 1' >/dev/null 2>&1
}

# Whether mysql://USER:PASS@127.0.0.1:3306/... logs in.
url_works() {
    local re='^mysql://([^:@/]+):([^@/]*)@'
    [[ "$1" =~ $re ]] || return 1
    mysql_tcp "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" -e 'select 1' >/dev/null 2>&1
}

# The URL saved in run/mysql.env, empty if none.
saved_url() {
    [[ -r "$MYSQL_ENV" ]] || return 0
    sed -n 's/^CHAT_MYSQL_URL=//p' "$MYSQL_ENV" | tail -n 1
}

random_password() {
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# Creates (or resets) chat@127.0.0.1 and chat@localhost with a new random
# password through root's unix socket, grants it databases `chat%`, and
# saves the URL in run/mysql.env (mode 600). Needs root_socket_works.
create_chat_user() {
    local pass sql host
    pass="$(random_password)"
    sql=""
    for host in 127.0.0.1 localhost; do
        sql+="CREATE USER IF NOT EXISTS 'chat'@'$host' IDENTIFIED BY '$pass';"
        sql+="ALTER USER 'chat'@'$host' IDENTIFIED BY '$pass';"
        sql+="GRANT ALL PRIVILEGES ON \`chat%\`.* TO 'chat'@'$host';"
    done
    log "creating MariaDB user chat (password in run/mysql.env)"
    # The SQL (with the password) goes through stdin, not the command line.
    printf '%s\n' "$sql" | timeout 20 "$(mysql_client)" -uroot >&2 ||
        die "could not create the MariaDB user chat through root's unix socket"
    mkdir -p "$RUN_DIR"
    (
        umask 077
        printf 'CHAT_MYSQL_URL=mysql://chat:%s@%s:%s/chat\n' "$pass" "$DB_HOST" "$DB_PORT" >"$MYSQL_ENV.tmp"
    )
    chmod 600 "$MYSQL_ENV.tmp"
    mv -f "$MYSQL_ENV.tmp" "$MYSQL_ENV"
}

# Prints the database URL to use (see the top of this file).
resolve_mysql_url() {
    if [[ -n "${CHAT_MYSQL_URL:-}" ]]; then
        printf '%s\n' "$CHAT_MYSQL_URL"
        return 0
    fi
    [[ -n "$(mysql_client)" ]] || die "no mariadb/mysql client found"
    if root_tcp_works; then
        printf '%s\n' "$DEFAULT_MYSQL_URL"
        return 0
    fi
    local url
    url="$(saved_url)"
    if [[ -n "$url" ]] && url_works "$url"; then
        printf '%s\n' "$url"
        return 0
    fi
    if root_socket_works; then
        create_chat_user
        url="$(saved_url)"
        url_works "$url" || die "the new MariaDB user chat cannot log in over TCP ($DB_HOST:$DB_PORT)"
        printf '%s\n' "$url"
        return 0
    fi
    cat >&2 <<EOF
[autobuild] ERROR: cannot log in to MariaDB at $DB_HOST:$DB_PORT as root.
Either set CHAT_MYSQL_URL=mysql://USER:PASSWORD@$DB_HOST:$DB_PORT/chat, or run
this script as root (it then creates a user through the unix socket), or have
an administrator run:
    CREATE USER 'chat'@'127.0.0.1' IDENTIFIED BY 'SOME_PASSWORD';
    GRANT ALL PRIVILEGES ON \`chat%\`.* TO 'chat'@'127.0.0.1';
EOF
    exit 1
}

# ---------------------------------------------------------------- processes

# Whether the process of pid file $1 is alive and was started before the
# file was written (so a reused pid is not taken for ours).
pidfile_alive() {
    local file="$1" pid age started
    [[ -f "$file" ]] || return 1
    pid="$(head -n 1 "$file" | tr -dc '0-9')"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    age="$(ps -o etimes= -p "$pid" 2>/dev/null | tr -dc '0-9')" || true
    [[ -n "$age" ]] || return 0
    started=$(($(date +%s) - age))
    ((started <= $(stat -c %Y "$file") + 2))
}

pidfile_pid() { head -n 1 "$1" | tr -dc '0-9'; }

# Sends SIGTERM to pid file $1's process, SIGKILL after ~10 s; removes the file.
stop_pidfile() {
    local file="$1" pid i
    if pidfile_alive "$file"; then
        pid="$(pidfile_pid "$file")"
        log "stopping $(basename "$file" .pid) (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid still running after 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    else
        log "$(basename "$file"): no process of ours running (stale pid file)"
    fi
    rm -f "$file"
}

# Starts bin/ChatServer IP PORT in the background (log and pid under run/)
# and waits until it accepts connections.
start_server() {
    local ip="$1" port="$2" url="$3"
    local pidfile="$RUN_DIR/server-$port.pid" logfile="$RUN_DIR/server-$port.log" pid i
    mkdir -p "$RUN_DIR"
    if pidfile_alive "$pidfile"; then
        log "ChatServer on $ip:$port is already running (pid $(pidfile_pid "$pidfile")); leaving it"
        return 0
    fi
    rm -f "$pidfile"
    [[ -x "$BIN_DIR/ChatServer" ]] || die "bin/ChatServer missing: the build did not produce it"
    if port_open "$ip" "$port"; then
        die "$ip:$port is already in use by another process (not started by this script); free it first (e.g. ss -ltnp 'sport = :$port')"
    fi
    local args=("$ip" "$port")
    [[ -z "$SERVER_THREADS" ]] || args+=(--threads "$SERVER_THREADS")
    # Appended: the log of every earlier run stays.
    CHAT_MYSQL_URL="$url" nohup "$BIN_DIR/ChatServer" "${args[@]}" \
        >>"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    log "started ChatServer $ip $port (pid $pid, log $logfile)"
    for ((i = 0; i < 120; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile"
            log "ChatServer exited; last lines of $logfile:"
            tail -n 20 "$logfile" >&2
            exit 1
        fi
        if port_open "$ip" "$port" && kill -0 "$pid" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    log "ChatServer did not accept connections on $ip:$port within 60 s; last lines of $logfile:"
    tail -n 20 "$logfile" >&2
    exit 1
}

# Starts our own nginx (prefix run/nginx, pid run/nginx.pid) with
# nginx/chat.conf, and waits until it accepts connections.
start_nginx() {
    local pidfile="$RUN_DIR/nginx.pid" conf="$NGINX_DIR/nginx.conf" i
    mkdir -p "$NGINX_DIR/logs"
    if pidfile_alive "$pidfile"; then
        log "nginx is already running (pid $(pidfile_pid "$pidfile")); leaving it"
        return 0
    fi
    rm -f "$pidfile"
    if port_open "$SERVER_IP" "$NGINX_PORT"; then
        die "$SERVER_IP:$NGINX_PORT is already in use by another process; free it first (e.g. ss -ltnp 'sport = :$NGINX_PORT'), or set CHAT_NGINX_PORT"
    fi
    stream_conf >"$NGINX_DIR/chat.conf"
    {
        echo "# Generated by autobuild.sh up; edit nginx/chat.conf instead."
        [[ -f "$STREAM_MODULE" ]] && echo "load_module $STREAM_MODULE;"
        echo "worker_processes 1;"
        echo "pid $pidfile;"
        echo "error_log $NGINX_DIR/logs/error.log;"
        echo "events { worker_connections 65536; }"
        echo "include $NGINX_DIR/chat.conf;"
    } >"$conf"
    "$(nginx_bin)" -t -q -p "$NGINX_DIR/" -c "$conf" || die "nginx rejected $conf"
    "$(nginx_bin)" -p "$NGINX_DIR/" -c "$conf" || die "nginx failed to start (log: run/nginx/logs/error.log)"
    for ((i = 0; i < 40; i++)); do
        port_open "$SERVER_IP" "$NGINX_PORT" && return 0
        sleep 0.25
    done
    die "nginx does not accept connections on $SERVER_IP:$NGINX_PORT (log: run/nginx/logs/error.log)"
}

# nginx/chat.conf with the upstream servers and the listening address of
# this `up` (CHAT_IP, CHAT_PORTS, CHAT_NGINX_PORT) in place of its own.
stream_conf() {
    local port servers=""
    for port in $SERVER_PORTS; do
        servers+="        server $SERVER_IP:$port max_fails=3 fail_timeout=10s;"$'\n'
    done
    awk -v servers="$servers" -v listen="$SERVER_IP:$NGINX_PORT" '
        /^[[:space:]]*server [0-9.]+:[0-9]+ / { if (!done) { printf "%s", servers; done = 1 } next }
        /^[[:space:]]*listen / { print "        listen " listen ";"; next }
        { print }
    ' "$ROOT/nginx/chat.conf"
}

# Checks the settings of `up` before anything starts.
check_settings() {
    [[ "$SERVER_IP" =~ ^[0-9.]+$ ]] || die "CHAT_IP=$SERVER_IP is not an IPv4 address"
    local port
    for port in $SERVER_PORTS $NGINX_PORT; do
        [[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) ||
            die "port $port (CHAT_PORTS or CHAT_NGINX_PORT) is not a number from 1 to 65535"
    done
    [[ -n "$SERVER_PORTS" ]] || die "CHAT_PORTS is empty: name at least one port"
    [[ -z "$SERVER_THREADS" || "$SERVER_THREADS" =~ ^[0-9]+$ ]] || die "CHAT_THREADS=$SERVER_THREADS is not a number"
}

# Writes what this `up` starts to run/up.env, for `status` and `down`.
record_up() {
    mkdir -p "$RUN_DIR"
    (
        umask 077
        {
            printf 'UP_IP=%s\n' "$SERVER_IP"
            printf 'UP_PORTS=%q\n' "$SERVER_PORTS"
            printf 'UP_NGINX_PORT=%s\n' "$NGINX_PORT"
            printf 'UP_MYSQL_URL=%q\n' "$1"
        } >"$UP_ENV.tmp"
    )
    mv -f "$UP_ENV.tmp" "$UP_ENV"
}

# ---------------------------------------------------------------- status

# Runs SQL $2 against database URL $1 (mysql://USER[:PASS]@HOST[:PORT]/DB)
# with the MariaDB client; prints the rows, tab-separated.
mysql_url_query() {
    local re='^mysql://([^:@/]+)(:([^@/]*))?@([^:/?]+)(:([0-9]+))?/([A-Za-z0-9_]+)'
    [[ "$1" =~ $re ]] || return 1
    local user="${BASH_REMATCH[1]}" pass="${BASH_REMATCH[3]}" host="${BASH_REMATCH[4]}"
    local port="${BASH_REMATCH[6]:-3306}" db="${BASH_REMATCH[7]}" client
    client="$(mysql_client)"
    [[ -n "$client" ]] || return 1
    MYSQL_PWD="$pass" timeout 10 "$client" --connect-timeout=3 -N -B -h"$host" -P"$port" -u"$user" "$db" -e "$2" 2>/dev/null
}

# Users online on the server at $1:$2 with pid $3, from table `online`
# (its rows name the server `IP:PORT/PID/...`); "?" if MySQL cannot say.
users_online() {
    local count
    count="$(mysql_url_query "$UP_MYSQL_URL" \
        "SELECT COUNT(*) FROM online WHERE server LIKE '$1:$2/$3/%'")" || count="?"
    printf '%s\n' "${count:-?}"
}

cmd_status() {
    if [[ ! -f "$UP_ENV" ]]; then
        echo "nothing started: ./autobuild.sh up has not run here (no $UP_ENV)"
        return 3
    fi
    local UP_IP UP_PORTS UP_NGINX_PORT UP_MYSQL_URL
    # shellcheck disable=SC1090
    . "$UP_ENV"
    # Digits and dots only: they go into the SQL text below.
    [[ "$UP_IP" =~ ^[0-9.]+$ ]] || die "$UP_ENV: bad UP_IP"
    local port pid file down=0
    for port in $UP_PORTS; do
        [[ "$port" =~ ^[0-9]+$ ]] || die "$UP_ENV: bad port $port"
        file="$RUN_DIR/server-$port.pid"
        if pidfile_alive "$file"; then
            pid="$(pidfile_pid "$file")"
            printf 'ChatServer  %-21s running      pid %-8s users online %s  (log %s)\n' \
                "$UP_IP:$port" "$pid" "$(users_online "$UP_IP" "$port" "$pid")" "$RUN_DIR/server-$port.log"
        else
            printf 'ChatServer  %-21s NOT RUNNING  (log %s)\n' "$UP_IP:$port" "$RUN_DIR/server-$port.log"
            down=1
        fi
    done
    file="$RUN_DIR/nginx.pid"
    if pidfile_alive "$file"; then
        printf 'nginx       %-21s running      pid %-8s balances over %s\n' \
            "$UP_IP:$UP_NGINX_PORT" "$(pidfile_pid "$file")" "$(printf "$UP_IP:%s " $UP_PORTS)"
    else
        printf 'nginx       %-21s NOT RUNNING\n' "$UP_IP:$UP_NGINX_PORT"
        down=1
    fi
    if ((down)); then
        echo "Not everything that ./autobuild.sh up started is running; ./autobuild.sh up starts what is missing."
        return 3
    fi
}

# ---------------------------------------------------------------- commands

cmd_build() {
    ensure_cargo
    build
}

cmd_up() {
    check_settings
    ensure_mariadb
    local url
    url="$(resolve_mysql_url)"
    ensure_redis || log "continuing without Redis: each server runs alone"
    ensure_nginx_installed
    if [[ -n "${CHAT_BIN_DIR:-}" ]]; then
        log "CHAT_BIN_DIR is set: running $BIN_DIR/ChatServer, not building"
    else
        ensure_cargo
        build
    fi
    record_up "$url"
    local port
    for port in $SERVER_PORTS; do
        start_server "$SERVER_IP" "$port" "$url"
        echo "ChatServer is listening on $SERVER_IP:$port (log: $RUN_DIR/server-$port.log)."
    done
    start_nginx
    echo "nginx balances $SERVER_IP:$NGINX_PORT over them (config: $NGINX_DIR/chat.conf)."
    echo "Connect with:  bin/ChatClient $SERVER_IP $NGINX_PORT"
    echo "See it with:   ./autobuild.sh status"
    echo "Stop with:     ./autobuild.sh down"
}

# The servers first, so they release their users cleanly while nginx still
# runs (a client then reconnects to a server still up), nginx last.
cmd_down() {
    local file found=0
    for file in "$RUN_DIR"/server-*.pid "$RUN_DIR"/*.pid; do
        [[ -e "$file" ]] || continue
        found=1
        stop_pidfile "$file"
    done
    ((found)) || log "nothing to stop (no pid files in $RUN_DIR)"
}

cmd_test() {
    ensure_cargo
    check_fmt
    check_clippy
    ensure_mariadb
    CHAT_MYSQL_URL="$(resolve_mysql_url)"
    export CHAT_MYSQL_URL
    ensure_redis || die "Redis is needed by the tests"
    ensure_nginx_installed
    build
    log "cargo test --release --no-fail-fast $*"
    local rc=0
    (cd "$ROOT" && cargo test --release --no-fail-fast "$@") || rc=$?
    if ((rc == 0)); then log "all tests passed"; else log "tests FAILED (exit $rc)"; fi
    return "$rc"
}

usage() {
    sed -n '2,22s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit "${1:-2}"
}

main() {
    cd "$ROOT"
    local cmd="${1:-build}"
    [[ $# -eq 0 ]] || shift
    if [[ "$cmd" != test && $# -gt 0 ]]; then
        # Settings come from the environment, never silently dropped flags.
        [[ "$1" != --threads ]] || die "$cmd takes no arguments: set CHAT_THREADS=${2:-N} instead (./autobuild.sh --help)"
        die "$cmd takes no arguments (got: $*); its settings are environment variables (./autobuild.sh --help)"
    fi
    case "$cmd" in
    build) cmd_build ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    test) cmd_test "$@" ;;
    -h | --help | help) usage 0 ;;
    *)
        log "unknown command: $cmd"
        usage
        ;;
    esac
}

# Sourcing the file (for testing its functions) does not run anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
