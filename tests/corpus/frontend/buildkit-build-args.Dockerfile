# syntax=example.com/not/a/dockerfile/frontend
# check=skip=all
FROM alpine
ENV LEGACY value
CMD echo shell form
