# syntax=docker/dockerfile:1
# escape=\
# syntax=docker/dockerfile:1.7
FROM alpine
