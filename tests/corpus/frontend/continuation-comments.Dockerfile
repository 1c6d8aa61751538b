FROM alpine
   RUN apk add --no-cache \
      curl \
# a comment inside the continuation
      git \

      jq
	# indented comment
RUN echo one \  
    two
RUN echo 'no continuation' \\
CMD ["sh"]
