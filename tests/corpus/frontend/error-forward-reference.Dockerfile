FROM alpine AS first
COPY --from=later /x /y

FROM alpine AS later
RUN echo later
