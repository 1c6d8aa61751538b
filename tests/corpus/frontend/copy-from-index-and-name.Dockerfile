FROM alpine AS zero
RUN echo 0 > /zero

FROM alpine AS one
RUN echo 1 > /one

FROM scratch
COPY --from=0 /zero /
COPY --from=one /one /
COPY --from=ONE /one /again
COPY --from=nginx:1.25 /etc/nginx/nginx.conf /nginx.conf
