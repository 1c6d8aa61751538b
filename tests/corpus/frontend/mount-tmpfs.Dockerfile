FROM alpine
RUN --mount=type=tmpfs,target=/tmp df /tmp
RUN --mount=type=tmpfs,target=/scratch,size=64m df /scratch
RUN --mount=type=tmpfs,dst=/big,size=1.5GiB true
