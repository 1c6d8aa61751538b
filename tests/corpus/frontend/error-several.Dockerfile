FROM alpine AS base
RUN --networks=none echo hi
COPY --from=nowhere-stage
WORKDIR
HEALTHCHECK --interval=fast CMD true
EXPOSE 99999
FROM base AS base2
RUNN oops
