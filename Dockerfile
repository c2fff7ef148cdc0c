# syntax=docker/dockerfile:1
# account-linker operator image.
#
# The binary links glibc dynamically (rustls with aws-lc-rs, built by the aws-lc-sys C build), so
# the runtime is distroless/cc (glibc, libgcc, CA certificates, no shell) rather than /static.
# Size: the release binary measured 36.6 MB (x86_64, rustc 1.95, `cargo build --release --locked`),
# 27.2 MB once stripped as below. distroless/cc-debian12 adds roughly 20–25 MB, so the image is
# estimated at about 50 MB uncompressed.
# No image was built where this was written (no Docker engine): the image size is an estimate.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
# aws-lc-sys builds its C sources with cmake when no prebuilt bindings match the target.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# Touch so cargo rebuilds the crate itself rather than trusting the placeholder's timestamps.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && strip -o /account-linker target/release/account-linker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /account-linker /usr/local/bin/account-linker
# 65532 is distroless's nonroot user; the chart's securityContext runs as it with a read-only
# root filesystem (the operator writes no files).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/account-linker"]
CMD ["run"]
