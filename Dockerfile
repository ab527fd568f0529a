# The one CloudRunr image: every component (`cloudrunr serve|api|webhook|router|log-consumer|
# build|migrate`). Builds run in bubblewrap inside it, with git and Node.js from the image.
#
#   docker build -t cloudrunr .
#   docker run --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     -p 8080:8080 -e CLOUDRUNR_LISTEN=0.0.0.0:8080 cloudrunr serve
#
# bubblewrap needs unprivileged user namespaces: Docker's default seccomp and AppArmor profiles
# deny them, hence the two options (or use a profile that allows `clone(CLONE_NEWUSER)`).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cloudrunr && cp target/release/cloudrunr /cloudrunr

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap git ca-certificates nodejs npm \
 && rm -rf /var/lib/apt/lists/* \
 && npm install -g pnpm@9 yarn@1 \
 && useradd --create-home --uid 10001 cloudrunr
COPY --from=build /cloudrunr /usr/local/bin/cloudrunr
USER cloudrunr
WORKDIR /home/cloudrunr
ENV CLOUDRUNR_DATA_DIR=/home/cloudrunr/data
EXPOSE 8080
ENTRYPOINT ["cloudrunr"]
CMD ["serve"]
