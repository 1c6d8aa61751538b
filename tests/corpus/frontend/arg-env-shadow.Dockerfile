FROM alpine
ARG V=arg-default
ENV V=from-env
RUN echo $V
ARG V
RUN echo $V
ENV W=env-first
ARG W=arg-second
RUN echo $W
