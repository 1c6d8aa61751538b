FROM alpine
RUN --network=none echo offline
RUN --network=host wget -q -O- http://127.0.0.1/
RUN --network=default echo default
RUN --security=insecure mount -t tmpfs none /mnt
RUN --security=sandbox echo sandboxed
RUN ["echo", "exec", "form", "$HOME"]
RUN
