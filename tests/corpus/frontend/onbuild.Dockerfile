FROM alpine AS assets
RUN echo asset > /asset

FROM alpine AS parent
ONBUILD ARG FLAVOR=vanilla
ONBUILD RUN echo "triggered $FLAVOR" > /triggered
ONBUILD COPY --from=assets /asset /asset
ONBUILD ENV TRIGGERED=yes
ONBUILD RUN --mount=type=cache,target=/cache ls /cache
RUN echo parent

FROM parent
RUN cat /triggered
