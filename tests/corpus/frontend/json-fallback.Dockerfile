FROM alpine
RUN [ -e /etc/passwd ] && echo exists
CMD [ "echo", 'not json' ]
ENTRYPOINT ["sh", "-c"] trailing text is ignored
SHELL ["/bin/sh", "-c"]
VOLUME ["/a", "/b"]
VOLUME /c /d
COPY ["a", "b", "/dst/"]
RUN ["echo", "json"]
