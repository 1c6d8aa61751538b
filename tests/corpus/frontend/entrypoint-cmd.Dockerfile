FROM alpine AS parent
CMD ["parent-cmd"]
ENTRYPOINT ["parent-entry"]

FROM parent AS reset
ENTRYPOINT ["child-entry"]

FROM parent AS kept
CMD ["child-cmd"]
ENTRYPOINT ["child-entry"]

FROM parent AS shell
SHELL ["/bin/bash", "-c"]
ENTRYPOINT exec app
CMD serve --port 80

FROM parent AS cleared
ENTRYPOINT []
CMD []

FROM scratch
COPY --from=reset /etc/hostname /reset
COPY --from=kept /etc/hostname /kept
COPY --from=shell /etc/hostname /shell
COPY --from=cleared /etc/hostname /cleared
