# sagad image: the orchestrator daemon and sagactl.
#
#   docker build -f docker/sagad.Dockerfile -t saga/sagad .   (from the repository root)
#
# Stage 1 builds with meson in release mode and installs into /staging;
# stage 2 is debian:12-slim with the runtime libraries only and the files
# this image needs copied out of /staging. docs/OPERATIONS.md explains the
# choices. The builder stage is the same in examples.Dockerfile, so one
# build serves both images from the layer cache. A side stage, dev-certs,
# is the image of compose.yaml's `certs` one-shot: openssl and
# docker/dev-certs.sh, which makes the example's development certificates.

FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential meson ninja-build pkg-config python3 \
      libpq-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler \
      protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --prefix=/usr: config in /etc, nothing under /usr/local. --libdir=lib: the
# library lands in /usr/lib whatever the architecture (no multiarch
# triplet to spell in the COPY lines below). No tests (they need Check and
# a PostgreSQL server); they run in CI, not in the image build.
RUN meson setup /build --buildtype=release --prefix=/usr --libdir=lib -Dtests=false \
 && meson compile -C /build \
 && meson install -C /build --destdir /staging

# compose.yaml's `certs` service (target: dev-certs) runs
# /usr/local/bin/dev-certs; it has no entry point of its own.
FROM debian:12-slim AS dev-certs
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/*
COPY docker/dev-certs.sh /usr/local/bin/dev-certs

FROM debian:12-slim
# OCI annotations (https://github.com/opencontainers/image-spec, annotations.md).
LABEL org.opencontainers.image.title="sagad" \
      org.opencontainers.image.description="sagad, the saga orchestrator: sagas and their outbox in PostgreSQL, steps dispatched over nng, compensation in reverse" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"
# libnng1 pulls in mbedtls (tls+tcp://). No PostgreSQL server: sagad's
# embedded database is for laptops; here SAGAD_DB must name one.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libnng1 libprotobuf-c1 \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid, so `USER` below is numeric (Kubernetes'
# runAsNonRoot can only verify a numeric user) and volumes can be chowned
# to it from outside.
RUN groupadd --system --gid 10001 saga \
 && useradd --system --uid 10001 --gid saga --home-dir /var/lib/sagad \
      --shell /usr/sbin/nologin saga \
 && install -d -o saga -g saga -m 0750 /var/lib/sagad

COPY --from=build /staging/usr/bin/sagad /staging/usr/bin/sagactl /usr/bin/
# libsaga.so.0 and the file it names (libsaga.so.0.MINOR.PATCH)
COPY --from=build /staging/usr/lib/libsaga.so.0* /usr/lib/
# The documented config file (server/sagad.conf): every setting commented
# out at its default. SAGAD_* variables (compose.yaml) override it.
COPY --from=build /staging/etc/sagad/sagad.conf /etc/sagad/sagad.conf
COPY docker/sagad-entrypoint.sh /usr/local/bin/sagad-entrypoint
COPY docker/healthcheck.sh /usr/local/bin/saga-healthcheck

# The image's defaults; compose.yaml and `docker run -e` override them.
# Listen on every interface (the built-in default is loopback, which is
# unreachable from other containers).
ENV SAGAD_CONFIG=/etc/sagad/sagad.conf
ENV SAGAD_DATA_DIR=/var/lib/sagad
ENV SAGAD_LISTEN=tcp://0.0.0.0:7700
ENV SAGAD_HTTP_LISTEN=http://0.0.0.0:7701

USER 10001:10001
WORKDIR /var/lib/sagad
# 7700: nng (participants, clients, sagactl). 7701: HTTP /healthz, /readyz,
# /metrics.
EXPOSE 7700 7701
# Ready = sagad serves and its PostgreSQL answers (/readyz). Docker's one
# health status gates `depends_on: condition: service_healthy`, which is a
# readiness question. healthcheck.sh uses bash's /dev/tcp: the slim image
# has no curl, and installing it for one GET is not worth its libraries.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/saga-healthcheck", "http", "/readyz"]
# SIGTERM (docker stop) makes sagad drain for up to shutdown-grace-ms (10 s
# by default): give `docker stop` more than that (compose.yaml does, 30 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sagad-entrypoint"]
CMD ["run"]
