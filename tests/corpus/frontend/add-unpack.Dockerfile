FROM alpine
ADD --unpack=false app.tar.gz /kept/
ADD --unpack=true app.tar.gz /extracted/
ADD --unpack https://example.com/rootfs.tar.gz /rootfs/
ADD https://example.com/rootfs.tar.gz /downloads/
