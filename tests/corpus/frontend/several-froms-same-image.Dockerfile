FROM alpine:3.19 AS a
FROM alpine:3.19 AS b
COPY --from=a /etc/hostname /a
FROM b
