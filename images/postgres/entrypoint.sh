#!/bin/sh
# docker-entrypoint.sh of the packed postgres:15.2-alpine image: a POSIX sh
# (busybox) cut of the official image's entrypoint. As root it makes the data
# and socket directories the postgres user's and runs itself again as that
# user; as postgres it initialises an empty $PGDATA once (superuser password,
# password auth from any host, listen on every address, POSTGRES_USER /
# POSTGRES_DB, /docker-entrypoint-initdb.d) and then execs postgres in the
# foreground, logging to stderr.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
SOCKET_DIR=/var/run/postgresql

log() { printf '%s\n' "$*" >&2; }

# file_env VAR [DEFAULT]: VAR from $VAR or from the file named by $VAR_FILE.
file_env() {
  _var=$1
  _def=${2-}
  eval "_val=\${$_var-}"
  eval "_fval=\${${_var}_FILE-}"
  if [ -n "$_val" ] && [ -n "$_fval" ]; then
    log "error: both $_var and ${_var}_FILE are set (but are exclusive)"
    exit 1
  fi
  if [ -n "$_fval" ]; then
    _val=$(cat "$_fval")
  elif [ -z "$_val" ]; then
    _val=$_def
  fi
  eval "$_var=\$_val"
  # shellcheck disable=SC2163 # exports the variable named by $_var
  export "$_var"
  unset "${_var}_FILE" _var _def _val _fval
}

# "docker run IMAGE -c foo=bar" passes options to postgres, as the official image.
if [ "${1#-}" != "${1-}" ]; then
  set -- postgres "$@"
fi

# Anything but postgres (psql, sh, ...) runs as asked.
if [ "${1-}" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" "$SOCKET_DIR"
  chmod 700 "$PGDATA" || :
  chmod 3775 "$SOCKET_DIR" || :
  chown -R postgres:postgres "$PGDATA" "$SOCKET_DIR"
  # Again, as the unprivileged user (initdb and postgres refuse root).
  # shellcheck disable=SC2016 # expanded by the inner shell
  exec su -s /bin/sh postgres -c 'exec /bin/sh "$0" "$@"' "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"

  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    cat >&2 <<'EOM'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.

       See PostgreSQL documentation about "trust":
       https://www.postgresql.org/docs/current/auth-trust.html
EOM
    exit 1
  fi
  if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
    log 'WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust". This will allow'
    log '         anyone with access to the Postgres port to access your database'
    log '         without a password, even if POSTGRES_PASSWORD is set.'
  fi

  # The C locale: the image has no locale files. Later POSTGRES_INITDB_ARGS win.
  pwfile=
  if [ -n "$POSTGRES_PASSWORD" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
  initdb --username="$POSTGRES_USER" ${pwfile:+--pwfile="$pwfile"} --no-locale -E UTF8 \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" $POSTGRES_INITDB_ARGS >&2 || {
    rc=$?
    [ -z "$pwfile" ] || rm -f "$pwfile"
    exit "$rc"
  }
  [ -z "$pwfile" ] || rm -f "$pwfile"

  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # A non-default database or init scripts need a server: a temporary one on
  # the unix socket only, as the official image.
  initdb_d=/docker-entrypoint-initdb.d
  if [ "$POSTGRES_DB" != postgres ] || [ -n "$(ls -A "$initdb_d" 2>/dev/null)" ]; then
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start >&2
    psql_cmd() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc -h "$SOCKET_DIR" "$@"; }
    if [ "$POSTGRES_DB" != postgres ]; then
      psql_cmd --dbname postgres --set db="$POSTGRES_DB" <<'EOSQL'
CREATE DATABASE :"db" ;
EOSQL
    fi
    for f in "$initdb_d"/*; do
      # shellcheck disable=SC1090 # init scripts are sourced, as the official image does
      case "$f" in
        *.sh) log "running $f"; . "$f" ;;
        *.sql) log "running $f"; psql_cmd --dbname "$POSTGRES_DB" -f "$f" ;;
        *.sql.gz) log "running $f"; gunzip -c "$f" | psql_cmd --dbname "$POSTGRES_DB" ;;
        *.sql.xz) log "running $f"; xz -dc "$f" | psql_cmd --dbname "$POSTGRES_DB" ;;
        *"/*") ;;
        *) log "ignoring $f" ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >&2
  fi
  unset POSTGRES_PASSWORD
  log 'PostgreSQL init process complete; ready for start up.'
else
  log 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
fi

shift
exec postgres "$@"
