# kiln's own image, laid out like Kaniko's so pipelines switch by changing the image name:
#   /kiln and /kaniko/executor   the binary (one file; the second name is a symlink)
#   /kaniko/warmer               the warmer, by name
#   /kaniko/.docker/             DOCKER_CONFIG: put config.json here for registry credentials
#   /etc/ssl/certs/              CA certificates for registries with public TLS
#
# Targets:
#   release (the default, last stage)  FROM scratch plus the above; no shell
#   debug                              the same plus a busybox shell in /busybox, for CI
#                                      systems that run a `script:` (GitLab CI)
#
# Where the binary comes from (build arg KILN_BUILD):
#   source (the default)  compiled here, in the RUST_IMAGE stage, for the builder's architecture
#   prebuilt              a static binary an earlier CI job compiled, taken from the context:
#                         KILN_BINARY (default dist/kiln) and the CA bundle KILN_CA_CERTS
#                         (default dist/ca-certificates.crt)
# Only the stages the target needs are built (kiln's and BuildKit's default; Kaniko needs
# --skip-unused-stages), so a prebuilt build never pulls RUST_IMAGE.
#
# Build with kiln itself (or any Dockerfile builder), from the repository root:
#   kiln build --context . --destination registry.example.com/kiln:latest
#   kiln build --context . --target debug --destination registry.example.com/kiln:debug
# or from a binary built earlier (static: glibc with -C target-feature=+crt-static, or musl):
#   mkdir -p dist && cp target/x86_64-unknown-linux-gnu/release/kiln dist/kiln \
#     && cp /etc/ssl/certs/ca-certificates.crt dist/
#   kiln build --context . --build-arg KILN_BUILD=prebuilt --destination registry.example.com/kiln:latest

ARG RUST_IMAGE=docker.io/library/rust:1.85-bookworm
ARG BUSYBOX_IMAGE=docker.io/library/busybox:1.36-musl
ARG KILN_BUILD=source

# A static binary (glibc linked in, as scripts/test builds it), so the final stage needs no
# libc. nasm and autotools build ISA-L, kiln's gzip decoder. Every build-* stage leaves the
# same tree in /out, which is copied as the root of the image.
FROM ${RUST_IMAGE} AS build-source
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates nasm autoconf automake libtool make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN target="$(uname -m)-unknown-linux-gnu" \
 && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p kiln --target "$target" \
 && mkdir -p /out/kaniko/.docker /out/workspace /out/etc/ssl/certs \
 && cp "target/$target/release/kiln" /out/kiln \
 && ln -s /kiln /out/kaniko/executor \
 && ln -s /kiln /out/kaniko/warmer \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && /out/kiln version

# A binary compiled before the image build, as CI pipelines do (a build job, then an image
# job that receives the binary as an artifact): no Rust toolchain image is pulled. The
# stage is busybox, not scratch, for the shell that makes the symlinks; the musl busybox
# image has no glibc, so `kiln version` fails here unless the binary is static.
FROM ${BUSYBOX_IMAGE} AS build-prebuilt
ARG KILN_BINARY=dist/kiln
ARG KILN_CA_CERTS=dist/ca-certificates.crt
COPY --chmod=755 ${KILN_BINARY} /out/kiln
COPY --chmod=644 ${KILN_CA_CERTS} /out/etc/ssl/certs/ca-certificates.crt
RUN mkdir -p /out/kaniko/.docker /out/workspace \
 && ln -s /kiln /out/kaniko/executor \
 && ln -s /kiln /out/kaniko/warmer \
 && /out/kiln version

# The binary the image gets: FROM resolves the stage name after expanding KILN_BUILD.
FROM build-${KILN_BUILD} AS build

# busybox with one relative symlink per applet, so it works from /busybox.
FROM ${BUSYBOX_IMAGE} AS busybox
RUN mkdir -p /out/busybox \
 && cp /bin/busybox /out/busybox/busybox \
 && for applet in $(/bin/busybox --list); do \
      [ "$applet" = busybox ] || ln -s busybox "/out/busybox/$applet"; \
    done

FROM scratch AS runtime
COPY --from=build /out/ /
ENV PATH=/kaniko:/usr/local/bin:/usr/bin:/bin \
    DOCKER_CONFIG=/kaniko/.docker/ \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/root \
    USER=root
WORKDIR /workspace
ENTRYPOINT ["/kaniko/executor"]

FROM runtime AS debug
COPY --from=busybox /out/busybox/ /busybox/
ENV PATH=/kaniko:/busybox
# GitLab CI overrides the entrypoint (`entrypoint: [""]`) and runs the job's script with this shell.
SHELL ["/busybox/sh", "-c"]
RUN mkdir -p /bin && ln -s /busybox/sh /bin/sh

FROM runtime AS release
