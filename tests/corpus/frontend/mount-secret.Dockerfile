FROM alpine
RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc
RUN --mount=type=secret,target=/root/.netrc cat /root/.netrc
RUN --mount=type=secret,id=aws,target=/root/.aws/credentials,required=true,mode=0440,uid=1000,gid=50 true
RUN --mount=type=secret,id=API_TOKEN,env=API_TOKEN,required sh -c 'test -n "$API_TOKEN"'
RUN --mount=type=secret,id=both,env=BOTH,target=/both true
RUN --mount=type=secret,source=legacy true
