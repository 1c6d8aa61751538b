FROM scratch
ENV A=1
LABEL l=v
CMD ["/app"]
