#!/bin/bash
# check_slixmpp.sh - a real third-party client against pubsubd: slixmpp's
# XEP-0060 plugin (Debian python3-slixmpp) through the full cycle, see
# tests/integration/slixmpp_cycle.py.
#
# Needs the test environment of tests/integration/env.sh (PST_* variables,
# a running PostgreSQL and Prosody) and PUBSUBD_BIN (make check exports it).
# Creates a fresh database t_slix_<pid>, runs pubsubd as the component
# c2.localhost (log: $PST_DIR/pubsubd-slix.log), runs the cycle with
# /usr/bin/python3, then stops pubsubd with SIGTERM (it must exit 0) and
# drops the database, always.
#
# Exit status: 0 pass, 1 fail.  Never 77 (skip): a missing variable, a
# missing slixmpp or a missing tool is a failure.
# SLIX_VERBOSE=1 makes slixmpp log every stanza to stderr.

set -u

PYTHON=/usr/bin/python3
SERVICE=c2.localhost
DB=t_slix_$$
START_SECS=10   # pubsubd: start to ready (component link and database)
STOP_SECS=12    # pubsubd: SIGTERM to exit (its shutdown_timeout_ms is 10 s)
CYCLE_SECS=35   # the Python cycle, hard limit (it has its own 30 s budget)
# Worst case in all: 10 + 35 + 12 s < 60 s; a passing run takes a few seconds.

NAME=check_slixmpp
fail() { echo "$NAME: FAIL: $*" >&2; exit 1; }
note() { echo "$NAME: $*" >&2; }

# ---- environment: every variable must be there (fail, never skip) -------
for v in PST_DIR PST_XMPP_HOST PST_C2S_PORT PST_COMPONENT_PORT PST_COMPONENT_SECRET \
	PST_PASSWORD PST_DOMAIN PST_PG_CONNINFO PUBSUBD_BIN; do
	[ -n "${!v:-}" ] || fail "environment variable $v is not set (run under 'make check' after tests/integration/env.sh start; . \$PST_DIR/env)"
done
[ -x "$PUBSUBD_BIN" ] || fail "PUBSUBD_BIN=$PUBSUBD_BIN is not executable"
[ -d "$PST_DIR" ] || fail "PST_DIR=$PST_DIR is not a directory"
[ -x "$PYTHON" ] || fail "$PYTHON not found (apt-get install python3)"
command -v psql >/dev/null 2>&1 || fail "psql not found (apt-get install postgresql-client)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || fail "cannot locate $0"
CYCLE=$HERE/slixmpp_cycle.py
if [ ! -f "$CYCLE" ] && [ -n "${TOP_SRCDIR:-}" ]; then
	CYCLE=$TOP_SRCDIR/tests/integration/slixmpp_cycle.py
fi
[ -f "$CYCLE" ] || fail "slixmpp_cycle.py not found next to $0"

ver=$("$PYTHON" -c 'import slixmpp; print(slixmpp.__version__)' 2>&1) ||
	fail "$PYTHON cannot import slixmpp (apt-get install python3-slixmpp): $ver"
note "slixmpp $ver, pubsubd $PUBSUBD_BIN, service $SERVICE, database $DB"

# ---- the database ---------------------------------------------------------
# PST_PG_CONNINFO with the database replaced (keyword=value form or URL).
case $PST_PG_CONNINFO in
postgres://* | postgresql://*)
	base=${PST_PG_CONNINFO%%\?*}
	query=${PST_PG_CONNINFO#"$base"}
	rest=${base#*://}
	case $rest in
	*/*) base=${base%/*} ;;
	esac
	DB_CONNINFO="$base/$DB$query"
	;;
*)
	if printf '%s' "$PST_PG_CONNINFO" | grep -Eq '(^|[[:space:]])dbname[[:space:]]*='; then
		DB_CONNINFO=$(printf '%s' "$PST_PG_CONNINFO" |
			sed -E "s/(^|[[:space:]])dbname[[:space:]]*=[[:space:]]*('[^']*'|[^[:space:]]*)/\\1dbname=$DB/")
	else
		DB_CONNINFO="$PST_PG_CONNINFO dbname=$DB"
	fi
	;;
esac

PSQL=(psql -X -q -v ON_ERROR_STOP=1)
LOG=$PST_DIR/pubsubd-slix.log
PID=
DB_CREATED=0

stop_pubsubd() { # SIGTERM, bounded wait, SIGKILL; sets STATUS
	STATUS=
	[ -n "$PID" ] || return 0
	kill -TERM "$PID" 2>/dev/null
	for _ in $(seq 1 $((STOP_SECS * 10))); do
		kill -0 "$PID" 2>/dev/null || break
		# a zombie still answers kill -0; 'wait' below reaps it
		[ "$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$PID/stat" 2>/dev/null)" = Z ] && break
		sleep 0.1
	done
	if kill -0 "$PID" 2>/dev/null && [ "$(sed -n 's/^.*) \(.\).*$/\1/p' "/proc/$PID/stat" 2>/dev/null)" != Z ]; then
		note "pubsubd (pid $PID) still running ${STOP_SECS}s after SIGTERM; SIGKILL"
		kill -KILL "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
		STATUS=timeout
	else
		wait "$PID" 2>/dev/null
		STATUS=$?
	fi
	PID=
}

# shellcheck disable=SC2317  # invoked through trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [ -n "$PID" ]; then
		stop_pubsubd
		note "pubsubd stopped during cleanup (status $STATUS)"
	fi
	if [ "$DB_CREATED" -eq 1 ]; then
		"${PSQL[@]}" "$PST_PG_CONNINFO" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
			{ note "could not drop database $DB"; [ "$rc" -eq 0 ] && rc=1; }
	fi
	if [ "$rc" -ne 0 ] && [ -f "$LOG" ]; then
		echo "----- last lines of $LOG -----" >&2
		tail -n 60 "$LOG" >&2
		echo "-----" >&2
	fi
	[ "$rc" -eq 77 ] && rc=1  # never a skip
	exit "$rc"
}
trap cleanup EXIT
trap 'note "interrupted"; exit 1' INT TERM HUP

out=$("${PSQL[@]}" "$PST_PG_CONNINFO" -c "CREATE DATABASE $DB" 2>&1) ||
	fail "could not create database $DB through PST_PG_CONNINFO: $out"
DB_CREATED=1

# ---- pubsubd ----------------------------------------------------------------
# Only our PUBSUBD_* settings reach pubsubd (not PUBSUBD_BIN or a stray one).
unset_args=()
while IFS= read -r var; do
	unset_args+=(-u "$var")
done < <(compgen -e | grep '^PUBSUBD_' || true)
: > "$LOG" || fail "cannot write $LOG"
env "${unset_args[@]}" \
	PUBSUBD_XMPP_HOST="$PST_XMPP_HOST" \
	PUBSUBD_XMPP_PORT="$PST_COMPONENT_PORT" \
	PUBSUBD_COMPONENT_JID="$SERVICE" \
	PUBSUBD_COMPONENT_SECRET="$PST_COMPONENT_SECRET" \
	PUBSUBD_DATABASE="$DB_CONNINFO" \
	PUBSUBD_LOG_LEVEL=debug \
	"$PUBSUBD_BIN" </dev/null >>"$LOG" 2>&1 &
PID=$!

# Every database connection pubsubd opened ("database NAME: idle ->
# connecting") has logged "database NAME: ready".
db_ready() {
	local names c
	names=$(sed -n 's/.* database \([^ ]*\): idle -> connecting$/\1/p' "$LOG" | sort -u)
	[ -n "$names" ] || return 1
	for c in $names; do
		grep -q " database $c: ready\$" "$LOG" || return 1
	done
}

ready=0
for _ in $(seq 1 $((START_SECS * 10))); do
	if ! kill -0 "$PID" 2>/dev/null; then
		wait "$PID"; st=$?; PID=
		fail "pubsubd exited with status $st during startup"
	fi
	# Ready: the component link is up and every database connection has
	# its schema and statements (an IQ before that gets a wait error).
	if grep -q "component link: authenticated as $SERVICE\$" "$LOG" && db_ready; then
		ready=1
		break
	fi
	sleep 0.1
done
[ $ready -eq 1 ] || fail "pubsubd not ready (component link authenticated, database connections ready) after ${START_SECS}s"

# ---- the cycle -------------------------------------------------------------
timeout -k 5 "$CYCLE_SECS" "$PYTHON" "$CYCLE" "$SERVICE"
rc=$?
case $rc in
0) ;;
124 | 137) fail "slixmpp_cycle.py killed after ${CYCLE_SECS}s" ;;
*) fail "slixmpp_cycle.py failed (status $rc)" ;;
esac

# ---- pubsubd must still run, and stop cleanly --------------------------------
kill -0 "$PID" 2>/dev/null || { wait "$PID"; st=$?; PID=; fail "pubsubd died during the cycle (status $st)"; }
stop_pubsubd
[ "$STATUS" = 0 ] || fail "pubsubd exit status after SIGTERM: $STATUS, expected 0"
note "PASS"
exit 0
