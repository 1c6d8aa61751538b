FROM alpine AS a
WORKDIR relative
WORKDIR ../b/./c/
WORKDIR /
ENV DIR=deep
WORKDIR /abs/../kept/$DIR/
RUN pwd
COPY f ./
USER app
WORKDIR owned
