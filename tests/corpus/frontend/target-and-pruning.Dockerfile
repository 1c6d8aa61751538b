FROM alpine AS deps
RUN echo deps

FROM deps AS test
RUN echo testing

FROM alpine AS Builder
COPY --from=deps /etc/os-release /deps
RUN echo build

FROM alpine AS release
COPY --from=builder /deps /deps
