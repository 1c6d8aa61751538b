ARG TAG=3.20 BASE=alpine:$TAG
FROM $BASE
ENV abc=hello
ENV abc=bye def=$abc
ENV name=first ${name}_key=seen-before
LABEL lab1=one lab2=$lab1 lab3=$abc
ARG TAG
ARG a=1 b=$a
ARG x=default y=$x
ENV x=env z=$x
RUN echo "$b $y $z"
