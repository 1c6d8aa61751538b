# syntax=docker.io/docker/dockerfile-upstream:master-labs
FROM alpine
RUN --frobnicate=1 true
