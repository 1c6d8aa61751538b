ARG VERSION=1.0
ARG REGISTRY=docker.io
ARG UNSET_GLOBAL
ARG DERIVED=v${VERSION}
FROM ${REGISTRY}/library/alpine:${VERSION} AS first
RUN echo "not declared: [$VERSION]"
ARG VERSION
RUN echo "declared: [$VERSION]"
ARG UNSET_GLOBAL
ARG DERIVED
RUN echo "[$UNSET_GLOBAL] [$DERIVED]"

FROM alpine
ARG VERSION=stage-default
COPY --from=first /etc/os-release /
RUN echo $VERSION
