FROM alpine as Build
MAINTAINER x
ENV LEGACY value
CMD echo shell form
CMD echo twice
RUN echo a \

  b
WORKDIR relative
RUN echo $UNDEFINED_VARIABLE
FROM build
