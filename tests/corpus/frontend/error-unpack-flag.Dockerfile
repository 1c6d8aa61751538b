FROM alpine
COPY --unpack app.tar.gz /app/
ADD --unpack=maybe app.tar.gz /app/
