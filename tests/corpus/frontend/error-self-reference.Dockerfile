FROM alpine AS me
COPY --from=me /x /y
