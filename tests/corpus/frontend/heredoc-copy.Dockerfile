FROM alpine
ARG GREETING=hello
COPY <<EOF /etc/motd
$GREETING from ${HOSTNAME:-the builder}
\$LITERAL "quotes stay"
EOF
COPY <<'EOF' /etc/literal
$GREETING is not expanded
EOF
COPY --chmod=0755 <<-SCRIPT /usr/local/bin/hello
	#!/bin/sh
	echo hello
	SCRIPT
COPY <<one <<two /dst/
first
one
second
two
