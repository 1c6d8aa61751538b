ARG EMPTY
FROM ${EMPTY}
FROM not a valid:image:ref
FROM --platform=linux/nonsense/a/b alpine
FROM --platform=$NOPE alpine
FROM Invalid:Ref
FROM a:b:c
FROM a@sha256:xyz
