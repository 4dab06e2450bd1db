# heraldd (the gateway) and herald (the CLI) in a small image that runs without
# privileges. Build it from a git clone, so that --version names the commit:
#
#   docker build -t herald .
#
# README.md, "Production", says how to run it; compose.yaml runs it with Redis.

# Keep in step with the go line of go.mod.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# The modules first, in a layer of their own: a change to the code alone does not
# download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries (no cgo) for an image without a C library; -trimpath keeps this
# machine's paths out of them. The toolchain records the module version and the
# commit (from .git) in each binary, which --version prints.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/heraldd ./cmd/herald

# Nothing but the binaries, CA certificates and time zones: no shell, no package
# manager. The nonroot variant's user is 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/heraldd /out/herald /usr/local/bin/
# Listen on the container's interfaces. heraldd still refuses to serve plaintext
# there unless given TLS files (HERALD_TLS_CERT_FILE, HERALD_TLS_KEY_FILE) or
# HERALD_INSECURE=true, and refuses dev mode unless given HERALD_REDIS (or --dev).
ENV HERALD_LISTEN=:7400 \
    HERALD_ADMIN_LISTEN=:7401
EXPOSE 7400 7401
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/heraldd"]
