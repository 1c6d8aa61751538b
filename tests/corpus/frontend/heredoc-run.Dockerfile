FROM alpine
ENV NAME=kiln
RUN <<EOF
echo one > /one
echo two >> /one
EOF
RUN <<'SCRIPT'
#!/usr/bin/env python3
print("$NAME stays")
SCRIPT
RUN <<-EOT sh
	echo tabs stripped
	EOT
RUN cat <<EOF > /expanded.txt
name=$NAME
EOF
RUN <<FIRST <<SECOND cat /dev/stdin
first body
FIRST
second body
SECOND
RUN python3 <<"PY" && echo done
print('quoted delimiter')
PY
