FROM alpine
HEALTHCHECK --interval=5parsecs CMD true
HEALTHCHECK --timeout=10 CMD true
HEALTHCHECK --start-period=500us CMD true
HEALTHCHECK --retries=-1 CMD true
HEALTHCHECK --retries=three CMD true
HEALTHCHECK CMD
HEALTHCHECK CHECK true
HEALTHCHECK NONE extra
