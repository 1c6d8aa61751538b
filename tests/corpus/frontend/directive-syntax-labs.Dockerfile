# syntax=docker/dockerfile:1-labs
# check=skip=JSONArgsRecommended,MaintainerDeprecated
FROM alpine
MAINTAINER someone
CMD echo no warning here
