#!/bin/bash
# The stand-in's entrypoint, doing what the official mysql:8.0 entrypoint does on first
# start: create the data directory, set the root password, create MYSQL_DATABASE and the
# MYSQL_USER/MYSQL_PASSWORD account. Later starts find the data in the volume and keep it.
set -euo pipefail

if [ "${1:0:1}" = "-" ]; then
  set -- mariadbd "$@"   # `command: ["--character-set-server=utf8mb4"]`, as with the official image
fi
if [ "$1" != "mariadbd" ] && [ "$1" != "mysqld" ]; then
  exec "$@"
fi
shift
datadir=/var/lib/mysql
server=(mariadbd --user=mysql --datadir="$datadir")

# A value inside '...' in SQL: double every quote.
quote() { printf "%s" "${1//\'/\'\'}"; }

if [ ! -d "$datadir/mysql" ]; then
  : "${MYSQL_ROOT_PASSWORD:?the stand-in needs MYSQL_ROOT_PASSWORD, as the official image does}"
  echo "mysql stand-in: initialising $datadir with $(mariadbd --version)"
  chown -R mysql:mysql "$datadir" /run/mysqld
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  # No TCP while the accounts are made, so no client (or healthcheck) sees a half-made server.
  "${server[@]}" --skip-networking --socket=/run/mysqld/init.sock "$@" &
  init_pid=$!
  for _ in $(seq 1 60); do
    mariadb-admin --socket=/run/mysqld/init.sock -uroot ping --silent >/dev/null 2>&1 && break
    sleep 0.5
  done
  root_password=$(quote "$MYSQL_ROOT_PASSWORD")
  {
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$root_password';"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '$root_password';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    # mariadb-install-db also makes root@<container hostname>, which --skip-name-resolve
    # ignores with a warning at every start; the official image has no such account.
    echo "DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '%');"
    echo "DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '%');"
    echo "FLUSH PRIVILEGES;"
    if [ -n "${MYSQL_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
    fi
    if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ]; then
      echo "CREATE USER '$(quote "$MYSQL_USER")'@'%' IDENTIFIED BY '$(quote "$MYSQL_PASSWORD")';"
      if [ -n "${MYSQL_DATABASE:-}" ]; then
        echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$(quote "$MYSQL_USER")'@'%';"
      fi
    fi
  } | mariadb --socket=/run/mysqld/init.sock -uroot
  kill "$init_pid"
  wait "$init_pid"
  echo "mysql stand-in: initialised; starting"
fi

chown -R mysql:mysql "$datadir" /run/mysqld
exec "${server[@]}" --bind-address=0.0.0.0 --skip-name-resolve "$@"
