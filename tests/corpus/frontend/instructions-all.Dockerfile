# Every instruction of the Dockerfile reference, once.
ARG BASE=alpine:3.19
FROM ${BASE} AS base
LABEL org.opencontainers.image.title="all instructions" version=1
MAINTAINER Jane Doe <jane@example.com>
ENV APP_HOME=/srv/app
WORKDIR $APP_HOME
ARG BUILD_NO=7
ADD https://example.com/releases/tool.tar.gz /opt/
COPY . .
RUN echo "build $BUILD_NO" > /build.txt
EXPOSE 8080
VOLUME /data
USER app:app
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s CMD ["/bin/healthcheck"]
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
ONBUILD RUN echo "building on base"
ENTRYPOINT ["/srv/app/run"]
CMD ["--port", "8080"]
