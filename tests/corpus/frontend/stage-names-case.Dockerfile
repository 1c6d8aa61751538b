FROM alpine AS Builder
RUN echo build > /out

FROM builder AS Tester
RUN echo test

FROM alpine
COPY --from=BUILDER /out /out
COPY --from=tester /etc/hostname /tested
