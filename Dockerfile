# syntax=docker/dockerfile:1
# Build: a static binary (pure-Go SQLite, no cgo).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# VERSION (e.g. v1.4.0) overrides the version `treasuryd version` prints;
# left empty, it comes from the build info (module version, VCS revision).
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/treasuryd ./cmd/treasuryd

# Run: distroless, non-root. The journal lives on the PVC mounted at
# /var/lib/treasuryd; the root filesystem stays read-only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/treasuryd /usr/local/bin/treasuryd
USER 65532:65532
VOLUME ["/var/lib/treasuryd"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/treasuryd"]
CMD ["run", "-config", "/etc/treasuryd/policy.yaml"]
