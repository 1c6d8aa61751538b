ARG OK=1
RUN echo no stage yet
ENV A=1
FROM alpine
