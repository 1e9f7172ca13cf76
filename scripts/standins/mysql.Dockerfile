# STAND-IN for mysql:8.0, built by scripts/base_images.py only when `docker pull mysql:8.0`
# fails (no registry reachable). It is MariaDB 10.11 from Debian's packages, with an
# entrypoint that sets up the database like the official image does; the suite's compose
# file runs unchanged on it.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        mariadb-server mariadb-client \
    && rm -rf /var/lib/apt/lists/* /var/lib/mysql \
    && sed -i '/expire_logs_days/d' /etc/mysql/mariadb.conf.d/50-server.cnf \
    && mkdir -p /var/lib/mysql /run/mysqld \
    && chown mysql:mysql /var/lib/mysql /run/mysqld

COPY mysql-standin.cnf /etc/mysql/mariadb.conf.d/99-standin.cnf
COPY mysql-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
LABEL org.opencontainers.image.title="mysql:8.0 stand-in (MariaDB 10.11 from Debian)" \
      ml-serving-patterns.standin="mysql:8.0"
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mariadbd"]
