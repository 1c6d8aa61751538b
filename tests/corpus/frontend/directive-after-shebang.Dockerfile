#!/usr/bin/env -S docker buildx build -f
# syntax=docker/dockerfile-upstream:master
# check=skip=JSONArgsRecommended
# escape=`
FROM alpine
ENV WINDOWS_LIKE=C:\temp
CMD echo shell form, no JSONArgsRecommended warning
