# The broker as a static binary on a distroless base, run as a non-root
# user. Build with `make image`; mount the configuration at
# /etc/mcpbroker/config.yaml and a writable volume at /data (the store and
# the audit trail, with `storage.bolt.path` and `audit.dir` under /data).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/mcpbroker ./cmd/mcpbroker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mcpbroker /usr/local/bin/mcpbroker
USER nonroot:nonroot
WORKDIR /data
VOLUME /data
EXPOSE 8080
# The admin listener answers on loopback inside the container.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/mcpbroker", "health"]
ENTRYPOINT ["/usr/local/bin/mcpbroker"]
CMD ["serve", "--config", "/etc/mcpbroker/config.yaml"]
