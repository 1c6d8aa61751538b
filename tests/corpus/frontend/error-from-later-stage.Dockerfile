FROM builder
RUN echo uses a stage defined below

FROM alpine AS builder
