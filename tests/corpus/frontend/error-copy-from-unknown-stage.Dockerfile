FROM golang:1.22 AS builder
RUN go build -o /out/app .

FROM alpine
COPY --from=buidler /out/app /app
COPY --from=7 /x /y
RUN --mount=type=bind,from=biulder,target=/b ls /b
