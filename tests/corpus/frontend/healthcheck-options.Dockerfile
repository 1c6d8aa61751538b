FROM alpine AS exec
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --start-interval=2s --retries=3 CMD ["/bin/check", "--quick"]

FROM exec AS shell
HEALTHCHECK CMD curl -f http://localhost/ || exit 1

FROM shell AS none
HEALTHCHECK NONE

FROM none
HEALTHCHECK --interval=0s --retries=0 CMD true
