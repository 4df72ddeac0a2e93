#!/bin/bash
# Private PostgreSQL + Prosody on 127.0.0.1 for pubsubd's integration tests
# and for scripts/run-local.
#
# Usage: PST_DIR=/abs/dir tests/integration/env.sh COMMAND
#
#   start            create (or reuse) $PST_DIR/pg and $PST_DIR/prosody, start
#                    both, write $PST_DIR/env (export lines, see below)
#   stop             stop Prosody and PostgreSQL (never fails if stopped)
#   status           print what runs
#   prosody-start | prosody-stop | prosody-restart | prosody-kill (SIGKILL)
#   pg-start | pg-stop | pg-kill (SIGKILL postmaster and backends)
#   register USER (a new account USER@localhost with the common password)
#
# Inputs for start (all optional): PST_PGPORT, PST_C2S_PORT,
# PST_COMPONENT_PORT (default: a free port, or the one in $PST_DIR/env),
# PST_COMPONENT_SECRET, PST_PASSWORD (default: the ones in $PST_DIR/env, else
# random), PST_FAST=1 (PostgreSQL without fsync), PST_PROSODY_LOG_LEVEL
# (default info).  PST_WAIT_SECS (default 20) bounds every wait.
#
# Every command other than start takes its ports etc. from $PST_DIR/env.
# Does not depend on the caller's cwd; safe to call from system().
# Informational messages go to stderr.

set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
SELF_DIR=$(dirname "$SELF")
TEMPLATE="$SELF_DIR/../../scripts/prosody.cfg.lua.in"
cd /

# Close every file descriptor inherited from the caller but stdin/out/err
# (and 255, bash's own handle on this script): a C test calling system()
# may have sockets and pipes open, and a server we start must not keep them.
for _fd in /proc/$$/fd/*; do
	_fd=${_fd##*/}
	case $_fd in 0|1|2|255|*[!0-9]*) continue ;; esac
	eval "exec $_fd>&-" 2>/dev/null || true
done
unset _fd

USERS="alice bob carol dave eve frank owner publisher"
DOMAIN=localhost
DEFAULT_PORTS=" 5222 5223 5269 5270 5280 5281 5347 5432 5433 "
WAIT_SECS=${PST_WAIT_SECS:-20}

log() { echo "env.sh: $*" >&2; }
die() { echo "env.sh: error: $*" >&2; exit 1; }

usage() {
	sed -n '2,/^$/p' "$SELF" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

[ $# -eq 1 ] || { [ $# -eq 2 ] && [ "$1" = register ]; } || usage
CMD=$1
ARG=${2:-}

[ -n "${PST_DIR:-}" ] || die "PST_DIR is not set (an absolute directory)"
case $PST_DIR in
	/*) ;;
	*) die "PST_DIR must be an absolute path (got '$PST_DIR')" ;;
esac
PST_DIR=${PST_DIR%/}

ENVFILE="$PST_DIR/env"
PGROOT="$PST_DIR/pg"
PGDATA_DIR="$PGROOT/data"
PGSOCK="$PGROOT/sock"
PGLOG="$PGROOT/postgresql.log"
PDIR="$PST_DIR/prosody"
PCFG="$PDIR/prosody.cfg.lua"
PPID_FILE="$PDIR/prosody.pid"
PLOG="$PDIR/prosody.log"
PCONSOLE="$PDIR/console.log"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# ---------------------------------------------------------------- helpers

find_pgbin() {
	if [ -n "${PST_PGBIN:-}" ]; then
		echo "$PST_PGBIN"; return
	fi
	if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
		echo /usr/lib/postgresql/15/bin; return
	fi
	local d best=""
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/postgres" ] && best=$d
	done
	[ -n "$best" ] || die "no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)"
	echo "$best"
}
PGBIN=$(find_pgbin)

# Run a PostgreSQL server binary: as the postgres user when we are root
# (initdb/pg_ctl/postgres refuse to run as root).
as_pg() {
	if [ $IS_ROOT -eq 1 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Value of VAR as written in $PST_DIR/env (empty if none).
file_val() {
	[ -f "$ENVFILE" ] || return 0
	# shellcheck disable=SC1090
	( . "$ENVFILE" >/dev/null 2>&1; eval "printf '%s' \"\${$1:-}\"" )
}

need_envfile() {
	[ -f "$ENVFILE" ] || die "$ENVFILE does not exist: run 'PST_DIR=$PST_DIR $SELF start' first"
	PGPORT_=$(file_val PST_PGPORT)
	C2S_PORT_=$(file_val PST_C2S_PORT)
	COMP_PORT_=$(file_val PST_COMPONENT_PORT)
	[ -n "$PGPORT_" ] && [ -n "$C2S_PORT_" ] && [ -n "$COMP_PORT_" ] ||
		die "$ENVFILE lacks PST_PGPORT/PST_C2S_PORT/PST_COMPONENT_PORT"
}

# Does something accept TCP connections on 127.0.0.1:$1?
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Can we bind 127.0.0.1:$1 (i.e. nobody listens there)?
port_free() {
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
	else
		! port_open "$1"
	fi
}

# A free port in 20000..31999 (below Linux's ephemeral range), not a default
# XMPP/PostgreSQL port, and none of the ports given as arguments.
pick_port() {
	local i p
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		case " $* " in *" $p "*) continue ;; esac
		case $DEFAULT_PORTS in *" $p "*) continue ;; esac
		if port_free "$p"; then
			echo "$p"; return 0
		fi
	done
	die "could not find a free TCP port on 127.0.0.1"
}

check_port_value() {
	case $2 in
		''|*[!0-9]*) die "$1 must be a TCP port number (got '$2')" ;;
	esac
	[ "$2" -ge 1 ] && [ "$2" -le 65535 ] || die "$1 out of range: $2"
}

# Is process $1 alive? A zombie counts as dead (our parent, or init, may be
# slow to reap processes that outlived the env.sh that started them).
pid_alive() {
	local st=""
	[ -n "${1:-}" ] || return 1
	kill -0 "$1" 2>/dev/null || return 1
	st=$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$1/stat" 2>/dev/null) || true
	[ "$st" != Z ]
}

tail_log() {
	local f
	for f in "$@"; do
		if [ -f "$f" ]; then
			echo "----- last lines of $f -----" >&2
			tail -n 40 "$f" >&2 || true
			echo "-----" >&2
		fi
	done
}

shq() { # single-quote for sh
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# Make sure the postgres user can reach $1 (traverse every parent).
ensure_traversable() {
	[ $IS_ROOT -eq 1 ] || return 0
	local d=$1
	while [ "$d" != "/" ] && [ -n "$d" ]; do
		if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
			log "note: chmod a+x $d (PostgreSQL runs as user postgres and must traverse it)"
			chmod a+x "$d"
		fi
		d=$(dirname "$d")
	done
}

# ---------------------------------------------------------------- PostgreSQL

# Is the postmaster of $PGDATA_DIR alive? (Not 'pg_ctl status': it takes a
# zombie postmaster for a live one.)
pg_running() {
	local pid
	pid=$(postmaster_pid)
	[ -n "$pid" ] && pid_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]
}

postmaster_pid() {
	[ -f "$PGDATA_DIR/postmaster.pid" ] || return 0
	head -n 1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null | tr -dc 0-9
}

# Children of pid $1, from /proc (no procps needed).
children_of() {
	local stat pid ppid line
	for stat in /proc/[0-9]*/stat; do
		# field 4 is ppid; comm (field 2) may contain spaces, strip it first
		{ read -r line < "$stat"; } 2>/dev/null || continue
		line=${line##*) }
		ppid=$(echo "$line" | cut -d' ' -f2)
		if [ "$ppid" = "$1" ]; then
			pid=${stat#/proc/}; pid=${pid%/stat}
			echo "$pid"
		fi
	done
}

write_pg_conf() {
	local fsync=on extra=""
	if [ "${PST_FAST:-0}" = 1 ]; then
		fsync=off
		extra="synchronous_commit = off
full_page_writes = off"
	fi
	cat > "$PGDATA_DIR/pst.conf.tmp" <<EOF
# written by tests/integration/env.sh on every start
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$PGSOCK'
max_connections = 200
fsync = $fsync
$extra
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
EOF
	mv "$PGDATA_DIR/pst.conf.tmp" "$PGDATA_DIR/pst.conf"
	[ $IS_ROOT -eq 1 ] && chown postgres: "$PGDATA_DIR/pst.conf"
	if ! grep -q "^include 'pst.conf'" "$PGDATA_DIR/postgresql.conf"; then
		echo "include 'pst.conf'" >> "$PGDATA_DIR/postgresql.conf"
	fi
}

pg_init() {
	mkdir -p "$PGROOT" "$PGSOCK"
	if [ $IS_ROOT -eq 1 ]; then
		ensure_traversable "$PST_DIR"
		chown postgres: "$PGROOT" "$PGSOCK"
		[ -d "$PGDATA_DIR" ] && chown -R postgres: "$PGDATA_DIR"
		[ -f "$PGLOG" ] && chown postgres: "$PGLOG"
	fi
	chmod 755 "$PGSOCK" 2>/dev/null || true
	local sockpath="$PGSOCK/.s.PGSQL.$PGPORT_"
	[ ${#sockpath} -lt 100 ] || die "PostgreSQL socket path too long (${#sockpath} chars): $sockpath; use a shorter PST_DIR"
	if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
		rm -rf "$PGDATA_DIR"
		log "initdb $PGDATA_DIR"
		as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust --nosync -U postgres \
			-E UTF8 --locale=C >"$PGROOT/initdb.log" 2>&1 ||
			{ tail_log "$PGROOT/initdb.log"; die "initdb failed"; }
	fi
	write_pg_conf
}

pg_wait_ready() {
	local i
	for i in $(seq 1 $((WAIT_SECS * 10))); do
		if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT_" -U postgres -d postgres -t 1 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	tail_log "$PGLOG"
	die "PostgreSQL does not accept connections on 127.0.0.1:$PGPORT_ after ${WAIT_SECS}s"
}

pg_start() {
	if pg_running; then
		pg_wait_ready
		return 0
	fi
	[ -f "$PGDATA_DIR/PG_VERSION" ] || die "no PostgreSQL cluster in $PGDATA_DIR: run 'env.sh start'"
	# A stale postmaster.pid (after pg-kill) whose pid now belongs to another
	# process would make the postmaster refuse to start.
	local pid
	pid=$(postmaster_pid)
	if [ -n "$pid" ]; then
		if ! pid_alive "$pid" || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != postgres ]; then
			rm -f "$PGDATA_DIR/postmaster.pid"
		fi
	fi
	# Same for the socket lock file; PostgreSQL takes a zombie for a live
	# postmaster (and init may be slow to reap it after pg-kill).
	local lock="$PGSOCK/.s.PGSQL.$PGPORT_.lock"
	if [ -f "$lock" ]; then
		pid=$(head -n 1 "$lock" 2>/dev/null | tr -dc 0-9)
		if [ -z "$pid" ] || ! pid_alive "$pid" || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != postgres ]; then
			rm -f "$lock" "$PGSOCK/.s.PGSQL.$PGPORT_"
		fi
	fi
	if ! port_free "$PGPORT_"; then
		die "port 127.0.0.1:$PGPORT_ (PostgreSQL) is already in use by another process"
	fi
	if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t "$WAIT_SECS" -s start >/dev/null 2>"$PGROOT/pg_ctl.err"; then
		cat "$PGROOT/pg_ctl.err" >&2 || true
		tail_log "$PGLOG"
		die "PostgreSQL did not start (port $PGPORT_)"
	fi
	pg_wait_ready
}

pg_createdb() {
	local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT_" -U postgres)
	if [ "$("${psql[@]}" -d postgres -Atc "select 1 from pg_database where datname = 'pubsubd'")" != 1 ]; then
		"${psql[@]}" -d postgres -c "create database pubsubd" >/dev/null ||
			die "could not create database pubsubd"
	fi
}

pg_stop() {
	if [ ! -d "$PGDATA_DIR" ]; then return 0; fi
	if pg_running; then
		as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t "$WAIT_SECS" -s stop >/dev/null 2>&1 || {
			log "pg_ctl stop -m fast failed; trying immediate shutdown"
			as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t "$WAIT_SECS" -s stop >/dev/null 2>&1 || true
		}
	fi
	if pg_running; then
		log "PostgreSQL still running; killing it"
		pg_kill
	fi
	return 0
}

pg_kill() {
	local pid kids k i
	if ! pg_running; then
		log "PostgreSQL is not running"
		return 0
	fi
	pid=$(postmaster_pid)
	# Freeze the postmaster so that it forks no new backend while we list them.
	kill -STOP "$pid" 2>/dev/null || true
	kids=$(children_of "$pid")
	kill -KILL "$pid" 2>/dev/null || true
	# Also kill the backends and auxiliary processes at once (like a crash of
	# the whole machine), otherwise they linger until they notice the
	# postmaster's death and keep the shared memory attached.
	for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
	for i in $(seq 1 $((WAIT_SECS * 10))); do
		local alive=0
		pid_alive "$pid" && alive=1
		for k in $kids; do pid_alive "$k" && alive=1; done
		[ $alive -eq 0 ] && return 0
		sleep 0.1
	done
	die "PostgreSQL processes still alive ${WAIT_SECS}s after SIGKILL"
}

# ---------------------------------------------------------------- Prosody

prosody_pid() {
	local pid=""
	if [ -f "$PPID_FILE" ]; then
		pid=$(tr -dc 0-9 < "$PPID_FILE" 2>/dev/null || true)
	fi
	if [ -z "$pid" ] && [ -f "$PDIR/launch.pid" ]; then
		pid=$(tr -dc 0-9 < "$PDIR/launch.pid" 2>/dev/null || true)
	fi
	if [ -n "$pid" ] && pid_alive "$pid" && grep -q "prosody" "/proc/$pid/cmdline" 2>/dev/null; then
		echo "$pid"
	fi
}

prosody_running() {
	[ -n "$(prosody_pid)" ]
}

write_prosody_cfg() {
	[ -f "$TEMPLATE" ] || die "Prosody config template not found: $TEMPLATE"
	local secret=$1 run_as_root=false level=${PST_PROSODY_LOG_LEVEL:-info}
	[ $IS_ROOT -eq 1 ] && run_as_root=true
	mkdir -p "$PDIR/data" "$PDIR/certs"
	sed -e "s|@RUN_AS_ROOT@|$run_as_root|g" \
		-e "s|@PROSODY_DIR@|$PDIR|g" \
		-e "s|@LOG_LEVEL@|$level|g" \
		-e "s|@C2S_PORT@|$C2S_PORT_|g" \
		-e "s|@COMPONENT_PORT@|$COMP_PORT_|g" \
		-e "s|@COMPONENT_SECRET@|$secret|g" \
		"$TEMPLATE" > "$PCFG.tmp"
	mv "$PCFG.tmp" "$PCFG"
}

register_accounts() {
	local u out
	for u in $USERS; do
		if ! out=$(prosodyctl --config "$PCFG" register "$u" "$DOMAIN" "$1" 2>&1); then
			echo "$out" >&2
			die "prosodyctl register $u@$DOMAIN failed"
		fi
	done
}

prosody_wait_ready() {
	local pid=$1 i
	for i in $(seq 1 $((WAIT_SECS * 10))); do
		if ! pid_alive "$pid"; then
			tail_log "$PCONSOLE" "$PLOG"
			die "Prosody exited during startup"
		fi
		if port_open "$C2S_PORT_" && port_open "$COMP_PORT_"; then
			return 0
		fi
		sleep 0.1
	done
	tail_log "$PCONSOLE" "$PLOG"
	die "Prosody does not accept connections on 127.0.0.1:$C2S_PORT_ (c2s) and :$COMP_PORT_ (component) after ${WAIT_SECS}s"
}

prosody_start() {
	local pid
	pid=$(prosody_pid)
	if [ -n "$pid" ]; then
		prosody_wait_ready "$pid"
		return 0
	fi
	[ -f "$PCFG" ] || die "no Prosody config $PCFG: run 'env.sh start'"
	command -v prosody >/dev/null 2>&1 || die "prosody not installed (apt-get install prosody)"
	local p
	for p in "$C2S_PORT_" "$COMP_PORT_"; do
		port_free "$p" || die "port 127.0.0.1:$p (Prosody) is already in use by another process"
	done
	rm -f "$PPID_FILE"
	# setsid: own session, so that a Ctrl-C in the caller's terminal does not
	# reach Prosody (the caller stops it in order).
	setsid prosody --config "$PCFG" -F </dev/null >>"$PCONSOLE" 2>&1 &
	pid=$!
	echo "$pid" > "$PDIR/launch.pid"
	prosody_wait_ready "$pid"
}

prosody_stop() {
	local pid i
	pid=$(prosody_pid)
	if [ -z "$pid" ]; then
		rm -f "$PPID_FILE" "$PDIR/launch.pid"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 $((WAIT_SECS * 10))); do
		pid_alive "$pid" || break
		sleep 0.1
	done
	if pid_alive "$pid"; then
		log "Prosody (pid $pid) ignored SIGTERM for ${WAIT_SECS}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$PPID_FILE" "$PDIR/launch.pid"
}

prosody_kill() {
	local pid i
	pid=$(prosody_pid)
	if [ -z "$pid" ]; then
		log "Prosody is not running"
		return 0
	fi
	kill -KILL "$pid" 2>/dev/null || true
	for i in $(seq 1 $((WAIT_SECS * 10))); do
		pid_alive "$pid" || break
		sleep 0.1
	done
	pid_alive "$pid" && die "Prosody (pid $pid) still alive after SIGKILL"
	rm -f "$PPID_FILE" "$PDIR/launch.pid"
}

# ---------------------------------------------------------------- commands

cmd_start() {
	command -v prosody >/dev/null 2>&1 || die "prosody not installed (apt-get install prosody)"
	command -v openssl >/dev/null 2>&1 || die "openssl not installed (apt-get install openssl)"
	mkdir -p "$PST_DIR"
	[ $IS_ROOT -eq 1 ] && chmod a+rx "$PST_DIR"

	# Ports: environment, else $PST_DIR/env (if still usable), else free.
	local fpg fc2s fcomp
	fpg=$(file_val PST_PGPORT); fc2s=$(file_val PST_C2S_PORT); fcomp=$(file_val PST_COMPONENT_PORT)
	local pgrun=0 prun=0
	[ -n "$fpg" ] && pg_running && pgrun=1
	prosody_running && prun=1

	if [ -n "${PST_PGPORT:-}" ]; then PGPORT_=$PST_PGPORT
	elif [ -n "$fpg" ] && { [ $pgrun -eq 1 ] || port_free "$fpg"; }; then PGPORT_=$fpg
	else PGPORT_=$(pick_port); fi
	if [ -n "${PST_C2S_PORT:-}" ]; then C2S_PORT_=$PST_C2S_PORT
	elif [ -n "$fc2s" ] && { [ $prun -eq 1 ] || port_free "$fc2s"; }; then C2S_PORT_=$fc2s
	else C2S_PORT_=$(pick_port "$PGPORT_"); fi
	if [ -n "${PST_COMPONENT_PORT:-}" ]; then COMP_PORT_=$PST_COMPONENT_PORT
	elif [ -n "$fcomp" ] && { [ $prun -eq 1 ] || port_free "$fcomp"; }; then COMP_PORT_=$fcomp
	else COMP_PORT_=$(pick_port "$PGPORT_" "$C2S_PORT_"); fi
	check_port_value PST_PGPORT "$PGPORT_"
	check_port_value PST_C2S_PORT "$C2S_PORT_"
	check_port_value PST_COMPONENT_PORT "$COMP_PORT_"
	[ "$PGPORT_" != "$C2S_PORT_" ] && [ "$PGPORT_" != "$COMP_PORT_" ] && [ "$C2S_PORT_" != "$COMP_PORT_" ] ||
		die "the three ports must differ ($PGPORT_ $C2S_PORT_ $COMP_PORT_)"

	# A server still running on other ports than wanted: restart it.
	if [ $pgrun -eq 1 ] && [ "$fpg" != "$PGPORT_" ]; then pg_stop; fi
	if [ $prun -eq 1 ] && { [ "$fc2s" != "$C2S_PORT_" ] || [ "$fcomp" != "$COMP_PORT_" ]; }; then prosody_stop; fi

	local secret password
	secret=${PST_COMPONENT_SECRET:-$(file_val PST_COMPONENT_SECRET)}
	[ -n "$secret" ] || secret=$(openssl rand -hex 16)
	case $secret in
		*[!A-Za-z0-9._~+=-]*) die "PST_COMPONENT_SECRET may only contain A-Z a-z 0-9 . _ ~ + = -" ;;
	esac
	password=${PST_PASSWORD:-$(file_val PST_PASSWORD)}
	[ -n "$password" ] || password=$(openssl rand -hex 8)

	# PostgreSQL
	pg_init
	pg_start
	pg_createdb

	# Prosody: config is regenerated each time; a running Prosody with a
	# different config is restarted.
	local oldcfg=""
	[ -f "$PCFG" ] && oldcfg=$(cat "$PCFG")
	write_prosody_cfg "$secret"
	if prosody_running && [ "$oldcfg" != "$(cat "$PCFG")" ]; then
		prosody_stop
	fi
	register_accounts "$password"
	prosody_start

	local tmp="$ENVFILE.tmp.$$"
	{
		echo "# written by $SELF start"
		echo "export PST_DIR=$(shq "$PST_DIR")"
		echo "export PST_PGHOST=127.0.0.1"
		echo "export PST_PGPORT=$PGPORT_"
		echo "export PST_PGSOCKDIR=$(shq "$PGSOCK")"
		echo "export PST_PG_CONNINFO=$(shq "host=127.0.0.1 port=$PGPORT_ user=postgres dbname=pubsubd")"
		echo "export PST_XMPP_HOST=127.0.0.1"
		echo "export PST_C2S_PORT=$C2S_PORT_"
		echo "export PST_COMPONENT_PORT=$COMP_PORT_"
		echo "export PST_COMPONENT_SECRET=$(shq "$secret")"
		echo "export PST_DOMAIN=$DOMAIN"
		echo "export PST_PASSWORD=$(shq "$password")"
		echo "export PST_USERS=$(shq "$USERS")"
		echo "export PST_ENV=$(shq "$SELF")"
	} > "$tmp"
	chmod 644 "$tmp"
	mv "$tmp" "$ENVFILE"
	log "PostgreSQL on 127.0.0.1:$PGPORT_, Prosody c2s on 127.0.0.1:$C2S_PORT_, component on 127.0.0.1:$COMP_PORT_ ($ENVFILE)"
}

cmd_stop() {
	if [ -f "$ENVFILE" ]; then
		PGPORT_=$(file_val PST_PGPORT)
	fi
	prosody_stop
	pg_stop
}

cmd_status() {
	local pid rc=0
	pid=$(prosody_pid)
	if [ -n "$pid" ]; then
		echo "prosody: running (pid $pid; c2s 127.0.0.1:$(file_val PST_C2S_PORT), component 127.0.0.1:$(file_val PST_COMPONENT_PORT))"
	else
		echo "prosody: stopped"; rc=1
	fi
	if pg_running; then
		echo "postgresql: running (pid $(postmaster_pid); 127.0.0.1:$(file_val PST_PGPORT), data $PGDATA_DIR)"
	else
		echo "postgresql: stopped"; rc=1
	fi
	return $rc
}

case $CMD in
	start) cmd_start ;;
	stop) cmd_stop ;;
	status) cmd_status || true ;;
	prosody-start) need_envfile; prosody_start ;;
	prosody-stop) prosody_stop ;;
	prosody-restart) need_envfile; prosody_stop; prosody_start ;;
	prosody-kill) prosody_kill ;;
	pg-start) need_envfile; pg_start ;;
	pg-stop) pg_stop ;;
	pg-kill) pg_kill ;;
	register) need_envfile
		out=$(prosodyctl --config "$PCFG" register "$ARG" "$DOMAIN" \
			"$(file_val PST_PASSWORD)" 2>&1) || { echo "$out" >&2; die "prosodyctl register $ARG@$DOMAIN failed"; } ;;
	-h|--help|help) usage ;;
	*) echo "env.sh: unknown command '$CMD'" >&2; usage ;;
esac
