FROM alpine AS unused
RUN echo never built
COPY --from=also-unused /x /x

FROM alpine AS also-unused
RUN true

FROM alpine
RUN echo target
