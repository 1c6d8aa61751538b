FROM alpine AS src
RUN mkdir -p /out/a /out/b

FROM alpine
COPY --from=src --chown=1000:1000 --chmod=0755 /out/a /a
COPY --chmod=u+x,go-w script.sh /usr/local/bin/
COPY --link --parents ./app/./src/ /dst/
COPY --exclude=*.md --exclude=tmp/ . /ctx/
COPY ["with space.txt", "/dst/with space.txt"]
COPY a.txt b.txt /multi/
