#!/usr/bin/env bash
# What the tests need from the machine. Make sure a MariaDB server answers on 127.0.0.1:3306 (user root, no password) for the test suite:
# install it from Debian's packages if missing, start it if down.
set -euo pipefail
ping() { mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }
start_mariadb() {
if [ ! -x /usr/sbin/mariadbd ]; then
  echo "installing mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq mariadb-server mariadb-client >/dev/null
fi
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
echo "starting mariadbd"
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
for _ in $(seq 1 60); do ping && break; sleep 1; done
ping || { echo "MariaDB did not come up on 127.0.0.1:3306" >&2; exit 1; }
}
ping || start_mariadb
mysql --protocol=tcp -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test"
# The compose file is validated by the tests with Debian's docker-compose (it needs no Docker engine).
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose (to validate docker-compose.yml)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq docker-compose >/dev/null 2>&1; } || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
fi
# The variant generator (quality gate, benchmark) draws captions with the two fonts of fonts-dejavu-core.
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ]; then
  echo "installing fonts-dejavu-core (captions of the generated variants)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1; } || { apt-get update -qq && apt-get install -y -qq fonts-dejavu-core >/dev/null; }
fi
# The review page's browser test drives Debian's chromium with Playwright's Python package (no browser download).
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (the review page's browser test)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq chromium >/dev/null 2>&1; } || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
fi
