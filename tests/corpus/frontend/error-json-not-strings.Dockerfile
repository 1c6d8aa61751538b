FROM alpine
CMD ["echo", 1]
RUN ["a", ["nested"]]
SHELL echo not json
ENTRYPOINT [null]
