# syntax=docker/dockerfile:1
# Build: make docker-build IMG=<registry>/promenroll:<tag>
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY policy/ policy/
COPY webhook/ webhook/
COPY internal/ internal/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/promenroll ./cmd/promenroll

# distroless static: no shell, no package manager, runs as 65532 (nonroot),
# matching deploy/base/deployment.yaml's securityContext.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/promenroll /promenroll
USER 65532:65532
ENTRYPOINT ["/promenroll"]
CMD ["serve"]
