FROM alpine
ARG CACHE_ID=apk
ARG UID=1000
ENV CACHE_DIR=/var/cache/apk
RUN --mount=type=cache,id=${CACHE_ID}-${TARGETARCH:-unknown},target=$CACHE_DIR,uid=$UID,sharing=${SHARING:-locked} apk add curl
RUN --mount=type=secret,id=${CACHE_ID}_token,target=/run/secrets/${CACHE_ID} true
