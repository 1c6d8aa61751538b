FROM scratch
STOPSIGNAL SIGNOPE
STOPSIGNAL 0
EXPOSE 80/xyz
EXPOSE port
COPY --chmod=888 a /a
COPY --chmod=u+q a /a
COPY https://example.com/f /f
COPY git@github.com:a/b.git /src
ADD --checksum=sha256:1234 https://example.com/f /f
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d local.txt /f
