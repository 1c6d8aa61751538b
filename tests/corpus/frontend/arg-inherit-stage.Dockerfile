FROM alpine AS parent
ARG STAGE_ARG=parent-value
ENV FROM_ENV=env
RUN echo $STAGE_ARG

FROM parent
RUN echo "[$STAGE_ARG] [$FROM_ENV]"
COPY file /${STAGE_ARG}/
