FROM alpine
SHELL ["/bin/ash", "-c"]
RUN echo shell
RUN ["/bin/echo", "exec", "$NOT_EXPANDED"]
RUN echo "quotes" 'and' \$dollar
