# check=error=true
FROM alpine
CMD echo shell form
