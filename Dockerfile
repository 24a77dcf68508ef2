# syntax=docker/dockerfile:1
# Multi-stage build: a static imagegate binary on a distroless, non-root base.
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN go build -trimpath -ldflags "-s -w -X github.com/imagegate/imagegate/server.Version=${VERSION}" \
      -o /out/imagegate ./cmd/imagegate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/imagegate /usr/local/bin/imagegate
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/imagegate"]
CMD ["serve", "--config", "/etc/imagegate/config.yaml"]
