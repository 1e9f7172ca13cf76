# STAND-IN for prom/prometheus, built by scripts/base_images.py only when the pull fails
# (no registry reachable). It is Prometheus 2 from Debian's package, started the way the
# official image starts it (entrypoint, flags, user, data folder), so the compose file's
# `monitoring` profile runs unchanged on it.
FROM python:3.11-slim-bookworm

# policy-rc.d: the package's install script must not start a daemon inside the build.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
    && mkdir -p /prometheus /etc/prometheus \
    && chown nobody:nogroup /prometheus /etc/prometheus

LABEL org.opencontainers.image.title="prom/prometheus stand-in (Prometheus 2 from Debian)" \
      ml-serving-patterns.standin="prom/prometheus:v3.5.0"
USER nobody
WORKDIR /prometheus
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
