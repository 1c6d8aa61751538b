FROM alpine:3.19 AS base
ENV A=1
WORKDIR /w

FROM base AS middle
ENV B=2
RUN echo $A $B

FROM middle
CMD ["sh"]
