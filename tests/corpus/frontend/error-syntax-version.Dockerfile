# syntax=docker/dockerfile:2
FROM alpine
