# The operator image: `cleanroom` as a static binary on distroless, uid 65532.
# Build from the repository root:  docker build -t cleanroom/operator:0.1.0 .
#
# No Docker engine in CI. `make static` (e2e/scripts/static-build.sh, run by CI)
# builds this binary outside Docker with the `cargo build` flags below and
# musl-gcc (gcc when musl-tools is missing), checks with readelf that it has no
# program interpreter and needs no shared library, and runs its --version. It
# fails if this file's `cargo build`, `-p ... --bin ...` or `cp` lines no longer
# match its own. Without the musl target (rustup unable to add it) it falls back
# to glibc with +crt-static and says so. The image itself is built by no test.

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
