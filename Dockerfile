# One image holds both binaries: the operator Deployment runs
# `sluice-operator`, runner Jobs run `sluice-runner exec`.
#   docker build -t sluice:dev .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p sluice-operator -p sluice-runner

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sluice-operator /usr/local/bin/sluice-operator
COPY --from=build /src/target/release/sluice-runner /usr/local/bin/sluice-runner
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
