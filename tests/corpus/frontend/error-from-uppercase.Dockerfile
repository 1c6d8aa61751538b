FROM alpine AS Builder
FROM Builder
