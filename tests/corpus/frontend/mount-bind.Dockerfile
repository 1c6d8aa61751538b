FROM alpine AS build
RUN echo built > /artifact

FROM alpine
RUN --mount=type=bind,target=/ctx ls /ctx
RUN --mount=target=/src,source=app,rw cat /src/main.go
RUN --mount=type=bind,from=build,source=/artifact,target=/a cat /a
RUN --mount=type=bind,from=0,src=/,dst=/stage0 ls /stage0
RUN --mount=type=bind,from=busybox:1.36,source=/bin/busybox,target=/bb /bb true
RUN --mount=type=bind,target=/ro,readonly ls /ro
