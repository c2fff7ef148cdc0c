# account-linker operator image.
#
# Build (one platform, the builder's own):
#   docker build -t account-linker:dev .
# Build both platforms from one builder (BuildKit; the builder stage runs natively on
# $BUILDPLATFORM and cross-compiles for $TARGETPLATFORM, no emulation of the compiler):
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t REGISTRY/account-linker:0.1.0 .
# buildah/podman (`buildah bud --platform linux/arm64 .`) set TARGETARCH from --platform; an
# engine that sets neither BUILDARCH nor TARGETARCH builds for the builder's own architecture.
# The SBOM as a build output (CycloneDX JSON, one file per platform):
#   docker buildx build --target sbom --output type=local,dest=target/sbom .
# .github/workflows/release.yml does all of this, then signs and attests the result.
#
# What is in it:
# - `cargo auditable build --release --locked`: the dependency list (name, version, source of
#   every crate) is embedded in the binary's `.dep-v0` section, so `cargo audit bin`, syft or
#   trivy can audit the binary itself, years later, without the source tree.
# - A CycloneDX SBOM of the crate (`cargo cyclonedx`, from the same Cargo.lock) at
#   /usr/share/doc/account-linker/sbom.cdx.json in the image, and as the `sbom` target.
# - OCI labels: revision, version and created from build arguments, the rest constants
#   (release.yml passes the same values through docker/metadata-action as well).
#
# Base images are pinned by digest (the digest of the multi-platform index, so one pin serves
# amd64 and arm64). Where they came from: no registry could be reached where this file was
# written, so the digests are those that public repositories and a public BuildKit log pin for
# the same tags (`rust:1.95-bookworm`, `gcr.io/distroless/cc-debian12:nonroot`), not pulled and
# checked here. Refresh them (and check them) with
#   docker buildx imagetools inspect docker.io/library/rust:1.95-bookworm --format '{{json .Manifest.Digest}}'
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot --format '{{json .Manifest.Digest}}'
# (or `crane digest IMAGE`); Dependabot (.github/dependabot.yml) proposes new digests weekly.
# `make lint-release` (hack/dockerfile-check.py) fails when a FROM has no digest.
#
# The binary links glibc dynamically (rustls with aws-lc-rs, built by the aws-lc-sys C build), so
# the runtime is distroless/cc (glibc, libgcc, CA certificates, no shell) rather than /static.
# Size: the release binary measured 36.6 MB (x86_64, rustc 1.95), 27.2 MB once stripped as
# below. distroless/cc-debian12 adds roughly 20–25 MB: about 50 MB uncompressed (an estimate, no
# image was built where this was written: no container engine, no reachable base images).

FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS builder
ARG BUILDARCH
ARG TARGETARCH
# cmake and clang for aws-lc-sys's C build; when cross-compiling, Debian's cross gcc and libc for
# the target architecture (amd64 -> arm64: gcc-aarch64-linux-gnu; arm64 -> amd64:
# gcc-x86-64-linux-gnu). The native toolchain already answers to <arch>-linux-gnu-gcc.
# DL3008: apt versions are fixed by the digest-pinned base image (its Debian point release);
# SC2086: $cross is a word list on purpose.
# hadolint ignore=DL3008,SC2086
RUN build="${BUILDARCH:-$(dpkg --print-architecture)}" target="${TARGETARCH:-$(dpkg --print-architecture)}" cross="" \
    && if [ "$build" != "$target" ]; then \
         case "$target" in \
           arm64) cross="gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
           amd64) cross="gcc-x86-64-linux-gnu g++-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
           *) echo "unsupported TARGETARCH=$target (linux/amd64 and linux/arm64 are built)" >&2; exit 1 ;; \
         esac; \
       fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends cmake clang $cross \
    && rm -rf /var/lib/apt/lists/*
# The release tools, pinned like hack/tools.sh pins them (the check compares the versions).
RUN cargo install --locked cargo-auditable@0.7.7 cargo-cyclonedx@0.5.9
# TARGETARCH (amd64, arm64) -> Rust target triple; the cross linker and C compiler per triple.
RUN case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
      amd64) echo x86_64-unknown-linux-gnu > /rust-target ;; \
      arm64) echo aarch64-unknown-linux-gnu > /rust-target ;; \
      *) echo "unsupported TARGETARCH (linux/amd64 and linux/arm64 are built)" >&2; exit 1 ;; \
    esac \
    && rustup target add "$(cat /rust-target)"
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CXX_x86_64_unknown_linux_gnu=x86_64-linux-gnu-g++
WORKDIR /src
# Dependencies first, in their own layer: source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo auditable build --release --locked --target "$(cat /rust-target)" \
    && rm -rf src
COPY src ./src
# Touch so cargo rebuilds the crate itself rather than trusting the placeholder's timestamps.
RUN touch src/main.rs src/lib.rs \
    && cargo auditable build --release --locked --target "$(cat /rust-target)" \
    && T="$(cat /rust-target)" \
    && "${T%%-*}-linux-gnu-strip" --keep-section=.dep-v0 -o /account-linker "target/$T/release/account-linker" \
    && cargo cyclonedx --format json --spec-version 1.5 --target "$T" \
    && mkdir -p /sbom && mv account-linker.cdx.json /sbom/sbom.cdx.json

# `--target sbom --output type=local,dest=DIR` writes the SBOM and nothing else (an export, never
# pushed as an image, hence no labels).
# hadolint ignore=DL3049
FROM scratch AS sbom
COPY --from=builder /sbom/sbom.cdx.json /account-linker.cdx.json

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="account-linker" \
      org.opencontainers.image.description="Kubernetes operator that links AWS accounts to one hub identity and keeps the link verified" \
      org.opencontainers.image.source="https://github.com/account-linker/account-linker" \
      org.opencontainers.image.url="https://github.com/account-linker/account-linker" \
      org.opencontainers.image.documentation="https://github.com/account-linker/account-linker/tree/main/docs" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="account-linker" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /account-linker /usr/local/bin/account-linker
COPY --from=builder /sbom/sbom.cdx.json /usr/share/doc/account-linker/sbom.cdx.json
# 65532 is distroless's nonroot user; the chart's securityContext runs as it with a read-only
# root filesystem (the operator writes no files).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/account-linker"]
CMD ["run"]
