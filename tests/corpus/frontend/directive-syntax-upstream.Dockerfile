# syntax=registry-1.docker.io/docker/dockerfile-upstream:master
FROM alpine
ADD --chmod=0644 a /a
