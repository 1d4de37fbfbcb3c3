# Example participants image: order-inventory, order-payment, order-shipping
# and order-client (examples/order), sagactl, and the example saga's
# descriptor set, behind one entry point whose first argument is the role:
#
#   docker build -f docker/examples.Dockerfile -t saga/examples .   (from the repository root)
#   docker run ... saga/examples inventory|payment|shipping|register|client
#
# Same pattern as sagad.Dockerfile (identical builder stage, so the layer
# cache builds once for both). docs/OPERATIONS.md explains the choices.

FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential meson ninja-build pkg-config python3 \
      libpq-dev libnng-dev libprotobuf-c-dev protobuf-c-compiler \
      protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build --buildtype=release --prefix=/usr --libdir=lib -Dtests=false \
 && meson compile -C /build \
 && meson install -C /build --destdir /staging

FROM debian:12-slim
# OCI annotations (https://github.com/opencontainers/image-spec, annotations.md).
LABEL org.opencontainers.image.title="saga-examples" \
      org.opencontainers.image.description="the order saga example participants (inventory, payment, shipping) and order-client, on libsaga" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libnng1 libprotobuf-c1 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 saga \
 && useradd --system --uid 10001 --gid saga --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin saga

COPY --from=build /staging/usr/bin/order-inventory /staging/usr/bin/order-payment \
     /staging/usr/bin/order-shipping /staging/usr/bin/order-client \
     /staging/usr/bin/sagactl /usr/bin/
# libsaga.so.0 and the file it names (libsaga.so.0.MINOR.PATCH)
COPY --from=build /staging/usr/lib/libsaga.so.0* /usr/lib/
COPY --from=build /staging/usr/share/saga/examples/order.binpb /usr/share/saga/examples/order.binpb
COPY docker/participant-entrypoint.sh /usr/local/bin/participant-entrypoint
COPY docker/healthcheck.sh /usr/local/bin/saga-healthcheck

USER 10001:10001
# No HEALTHCHECK here: what is healthy depends on the role (a participant
# is healthy when sagad holds its connection, the register one-shot just
# exits). compose.yaml sets one per participant service:
#   saga-healthcheck participant NAME
ENTRYPOINT ["/usr/local/bin/participant-entrypoint"]
CMD ["--help"]
