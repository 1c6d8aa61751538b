FROM alpine AS 1abc
FROM alpine AS has/slash
FROM alpine AS
FROM alpine AS a b
FROM alpine FOO bar
