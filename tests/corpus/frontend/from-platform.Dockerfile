FROM --platform=$BUILDPLATFORM golang:1.22 AS build
ARG TARGETOS
ARG TARGETARCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .

FROM --platform=linux/arm64 alpine:3.19 AS arm
RUN uname -m

FROM alpine:3.19
COPY --from=build /out/app /app
