FROM alpine
RUN wget https://example.com/
ARG NO_PROXY
RUN echo $NO_PROXY
