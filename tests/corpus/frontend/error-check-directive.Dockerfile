# check=skip=foo;frob=1
FROM alpine
