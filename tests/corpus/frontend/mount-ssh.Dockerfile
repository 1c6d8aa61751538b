FROM alpine
RUN --mount=type=ssh ssh-add -l
RUN --mount=type=ssh,id=github,required --mount=type=ssh,id=gitlab,target=/ssh/gitlab.sock,mode=0660,uid=1000,gid=1000 git clone git@github.com:a/b.git
RUN --mount=type=ssh,required=false true
