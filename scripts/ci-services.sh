#!/usr/bin/env bash
# Starts the database servers the end-to-end tests use, on 127.0.0.1 only, and prints the
# environment the tests read:
#
#   export POSTERN_TEST_PG_URL=postgres://postern:postern@127.0.0.1:5432/postgres
#   export POSTERN_TEST_MYSQL_URL=mysql://postern:postern@127.0.0.1:3306/mysql
#
# Use it as `eval "$(scripts/ci-services.sh)"`. Everything else it says goes to stderr.
# Both URLs are admin URLs: each test creates a database of its own and drops it after.
#
# Idempotent: a server that already answers is left running, users are created or reset.
# It also makes sure Postfix's own system-wide daemons are stopped: tests start private
# instances of Postfix (tests/src/postfix.rs) and must not meet the system one.
#
# Needs root and Debian 12's packages: postgresql, mariadb-server, postfix (.ci/run installs them).
set -euo pipefail

# stdout carries only the export lines; fd 3 keeps it, everything else goes to stderr.
# Daemons started here get fd 3 closed, or `$(...)` in the caller would wait for them forever.
exec 3>&1 1>&2

readonly WAIT_SECS=${POSTERN_SERVICES_WAIT_SECS:-60}
readonly PG_PORT=5432
readonly MYSQL_PORT=3306
readonly DB_USER=postern
readonly DB_PASSWORD=postern
readonly MYSQL_DATADIR=/var/lib/mysql
readonly MYSQL_RUNDIR=/run/mysqld
readonly MYSQL_SOCKET=$MYSQL_RUNDIR/mysqld.sock
readonly MYSQL_LOG=/var/log/mysql/postern-ci.log

say() { echo "ci-services: $*"; }
die() {
    echo "ci-services: ERROR: $*"
    exit 1
}

# wait_until SECONDS DESCRIPTION COMMAND...: retries COMMAND every half second; fails after
# SECONDS. DESCRIPTION is for the reader of the call.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}

[[ $(id -u) -eq 0 ]] || die "must run as root (it starts system services)"
cd /tmp # psql/mariadb run as other users; keep them out of an unreadable cwd

# --- Postfix: the system instance must not run ---------------------------------------------
stop_system_postfix() {
    command -v postfix >/dev/null || return 0
    if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
        say "stopping the system-wide Postfix"
        postfix stop || die "postfix stop failed"
    fi
    # A master started from a config that has since gone: stop it by its pid file.
    local pidfile=/var/spool/postfix/pid/master.pid pid
    if [[ -f $pidfile ]]; then
        pid=$(tr -dc '0-9' <"$pidfile")
        if [[ -n $pid ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == master ]]; then
            say "stopping the system-wide Postfix master (pid $pid)"
            kill -TERM "$pid"
            wait_until 20 "the system Postfix to stop" test ! -e "/proc/$pid" ||
                die "the system Postfix master ($pid) did not stop"
        fi
    fi
}

# --- PostgreSQL ------------------------------------------------------------------------------
start_postgres() {
    command -v pg_lsclusters >/dev/null || die "PostgreSQL is not installed (apt-get install postgresql)"
    local version cluster=main
    version=$(pg_lsclusters -h | awk -v p=$PG_PORT '$3 == p { print $1; exit }')
    if [[ -z $version ]]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
        [[ -n $version ]] || die "no PostgreSQL server under /usr/lib/postgresql"
        if ! pg_lsclusters -h | awk '{ print $1 "/" $2 }' | grep -qx "$version/$cluster"; then
            say "creating PostgreSQL cluster $version/$cluster"
            pg_createcluster --port=$PG_PORT "$version" "$cluster" 3>&- ||
                die "pg_createcluster failed"
        fi
    fi
    cluster=$(pg_lsclusters -h | awk -v p=$PG_PORT -v v="$version" '$1 == v && $3 == p { print $2; exit }')
    [[ -n $cluster ]] || die "PostgreSQL $version has no cluster on port $PG_PORT"

    # Listen on 127.0.0.1 only; the stock pg_hba.conf already allows scram passwords there.
    local confdir=/etc/postgresql/$version/$cluster/conf.d
    local conf=$confdir/postern-ci.conf
    local want="listen_addresses = '127.0.0.1'"
    local changed=no
    mkdir -p "$confdir"
    if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$want" ]]; then
        echo "$want" >"$conf"
        changed=yes
    fi
    local status
    status=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $4 }')
    if [[ $status == online* ]]; then
        if [[ $changed == yes ]]; then
            say "restarting PostgreSQL $version/$cluster (listen_addresses changed)"
            pg_ctlcluster "$version" "$cluster" restart 3>&- || die "pg_ctlcluster restart failed"
        else
            say "PostgreSQL $version/$cluster is already running"
        fi
    else
        say "starting PostgreSQL $version/$cluster"
        pg_ctlcluster "$version" "$cluster" start 3>&- ||
            die "pg_ctlcluster start failed; log: $(tail -n 20 "/var/log/postgresql/postgresql-$version-$cluster.log" 2>/dev/null)"
    fi
    wait_until "$WAIT_SECS" "PostgreSQL on 127.0.0.1:$PG_PORT" pg_isready -q -h 127.0.0.1 -p $PG_PORT ||
        die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT within ${WAIT_SECS}s"
    say "PostgreSQL answers on 127.0.0.1:$PG_PORT"

    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p $PG_PORT -d postgres <<SQL ||
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER;
    END IF;
END
\$\$;
ALTER ROLE $DB_USER WITH LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
SQL
        die "could not create the PostgreSQL role $DB_USER"
    PGPASSWORD=$DB_PASSWORD psql -X -q -h 127.0.0.1 -p $PG_PORT -U $DB_USER -d postgres \
        -c 'SELECT 1' >/dev/null || die "cannot log in to PostgreSQL as $DB_USER over TCP"
    say "PostgreSQL: role $DB_USER can log in"
}

# --- MariaDB ---------------------------------------------------------------------------------
mysql_ping() { mariadb-admin --protocol=socket --socket=$MYSQL_SOCKET ping; }
MYSQL_PID=
# Succeeds once MariaDB answers, or once the mariadbd started here has died (no use waiting).
mysql_ping_or_gone() {
    mysql_ping && return 0
    [[ -n $MYSQL_PID ]] && ! kill -0 "$MYSQL_PID" 2>/dev/null
}

start_mariadb() {
    command -v mariadbd >/dev/null || die "MariaDB is not installed (apt-get install mariadb-server)"
    mkdir -p $MYSQL_RUNDIR "$(dirname $MYSQL_LOG)"
    chown mysql:mysql $MYSQL_RUNDIR "$(dirname $MYSQL_LOG)"
    if mysql_ping >/dev/null 2>&1; then
        say "MariaDB is already running"
    else
        if [[ ! -d $MYSQL_DATADIR/mysql ]]; then
            say "initialising the MariaDB data directory $MYSQL_DATADIR"
            mariadb-install-db --user=mysql --datadir=$MYSQL_DATADIR --skip-test-db \
                --auth-root-authentication-method=socket >>$MYSQL_LOG 2>&1 3>&- ||
                die "mariadb-install-db failed; log: $(tail -n 20 $MYSQL_LOG)"
        fi
        say "starting MariaDB (log: $MYSQL_LOG)"
        setsid mariadbd --user=mysql --datadir=$MYSQL_DATADIR --bind-address=127.0.0.1 \
            --port=$MYSQL_PORT --socket=$MYSQL_SOCKET --pid-file=$MYSQL_RUNDIR/mysqld.pid \
            </dev/null >>$MYSQL_LOG 2>&1 3>&- &
        MYSQL_PID=$!
    fi
    wait_until "$WAIT_SECS" "MariaDB" mysql_ping_or_gone ||
        die "MariaDB did not answer within ${WAIT_SECS}s; log: $(tail -n 30 $MYSQL_LOG 2>/dev/null)"
    mysql_ping >/dev/null 2>&1 ||
        die "mariadbd exited during startup; log: $(tail -n 30 $MYSQL_LOG 2>/dev/null)"
    say "MariaDB answers on $MYSQL_SOCKET"

    mariadb --protocol=socket --socket=$MYSQL_SOCKET -uroot <<SQL ||
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
        die "could not create the MariaDB user $DB_USER"
    wait_until "$WAIT_SECS" "MariaDB on 127.0.0.1:$MYSQL_PORT" \
        mariadb --protocol=tcp -h 127.0.0.1 -P $MYSQL_PORT -u$DB_USER -p$DB_PASSWORD -e 'SELECT 1' ||
        die "cannot log in to MariaDB as $DB_USER on 127.0.0.1:$MYSQL_PORT"
    say "MariaDB: user $DB_USER can log in on 127.0.0.1:$MYSQL_PORT"
}

stop_system_postfix
start_postgres
start_mariadb

echo "export POSTERN_TEST_PG_URL=postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/postgres" >&3
echo "export POSTERN_TEST_MYSQL_URL=mysql://$DB_USER:$DB_PASSWORD@127.0.0.1:$MYSQL_PORT/mysql" >&3
