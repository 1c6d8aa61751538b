FROM --platform alpine
FROM --plat=linux/amd64 alpine
COPY --link=maybe a /a
COPY --chown=1 --chown=2 a /a
ENV --x=y A=1
RUN --mount echo
ADD --from=stage a /a
COPY --checksum=sha256:abc a /a
