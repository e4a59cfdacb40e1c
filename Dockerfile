# The operator image: `cleanroom` as a static binary on distroless, uid 65532.
# Build from the repository root:  docker build -t cleanroom/operator:0.1.0 .
#
# The same static build runs without Docker (a test does it with these flags):
#   rustup target add x86_64-unknown-linux-musl
#   CC_x86_64_unknown_linux_musl=gcc cargo build --release --locked \
#     --target x86_64-unknown-linux-musl -p cleanroom --bin cleanroom
# (here musl-gcc comes from musl-tools; plain gcc also compiles ring's C for musl.)
# `file` then says "static-pie linked" and `ldd` "statically linked".

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
      -p cleanroom --bin cleanroom \
 && cp target/x86_64-unknown-linux-musl/release/cleanroom /cleanroom

# No shell, no libc, no package manager: nothing to exec into but the binary.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /cleanroom /cleanroom
USER 65532:65532
ENTRYPOINT ["/cleanroom"]
CMD ["run"]
