FROM alpine AS seed
RUN mkdir /data

FROM golang:1.22 AS build
WORKDIR /src
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,id=gobuild,dst=/root/.cache/go-build,sharing=locked \
    --mount=type=cache,destination=rel-cache,sharing=private,mode=0700,uid=1000,gid=1000 \
    go build ./...
RUN --mount=type=cache,target=/var/cache/apt,ro \
    --mount=type=cache,target=/seeded,from=seed,source=/data,readonly=false \
    --mount=type=cache,target=/rw,rw=true,SHARING=LOCKED \
    ls /var/cache/apt
