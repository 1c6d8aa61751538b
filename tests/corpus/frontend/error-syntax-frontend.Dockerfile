# syntax=example.com/my/frontend:1.0
FROM alpine
