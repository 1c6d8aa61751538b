FROM alpine
RUN --mount=type=cache,taget=/cache true
RUN --mount=type=cache,target=/c,sharing=sometimes true
RUN --mount=type=bind,target=/b,mode=0755 true
RUN --mount=required,type=secret,id=x true
RUN --mount=type=nfs,target=/n true
RUN --mount=type=cache,target=/c,uid=root true
RUN --mount=type=secret true
RUN --mount=type=tmpfs,target=/t,size=huge true
RUN --mount=type=cache,target=/c,from=$STAGE true
RUN --mount=type=cache,target=/c,"bad"quote true
RUN --mount=type=cache,target=/ true
RUN --mount=type=cache,target=/c,readonly=maybe true
RUN --mount=type=ssh,source=/x true
RUN --mount=type=cache,target=/c,env=X true
