# One image holds both binaries: the operator Deployment runs
# `sluice-operator`, runner Jobs run `sluice-runner exec`.
#   docker build -t sluice:0.1.0 .
# The runtime is Debian slim rather than distroless because `shell` nodes
# run their scripts with /bin/sh inside the runner container.
#
# This is the build for machines with network access. CI builds the same
# runtime layout offline from release binaries on a debootstrap base
# (.ci/image/build and .ci/image/Dockerfile); a test keeps the two alike.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --release -p sluice-operator -p sluice-runner

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 65532 --system --no-create-home nonroot
COPY --from=build /src/target/release/sluice-operator /usr/local/bin/sluice-operator
COPY --from=build /src/target/release/sluice-runner /usr/local/bin/sluice-runner
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
