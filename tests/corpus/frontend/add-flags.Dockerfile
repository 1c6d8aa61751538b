FROM alpine
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/tool.tar.gz /tmp/tool.tar.gz
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.13.0 /src/buildkit
ADD --chown=app --chmod=644 --link config.tar.gz /etc/app/
ADD --exclude=*.tmp dir /dir
ADD git@github.com:kiln-build/kiln.git /src/kiln
