#!/bin/bash
# A second opinion: build a handful of cases with buildah 1.28 (Debian) and write
# expected/buildah/CASE.json. BuildKit (record.sh) is the reference; buildah differs in known
# places (see the README), and these files are there to look at, not to test against.
#
#   tests/reference/record-buildah.sh [CASE...]
#
# Runs as root, after record.sh has been run at least once (it imports the same base image
# from dockerd, so that the history timestamps match and --base can skip it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${KILN_REF_DOCKER_DIR:-/tmp/kiln-ref-docker}
out_dir=$here/expected/buildah
context_mtime=1000000
default_cases=(env-forms arg-build-args cmd-entrypoint-empty entrypoint-resets-inherited-cmd
    healthcheck-options expose-forms volume-forms workdir-user-owned onbuild copy-chmod
    add-archives fs-whiteout fs-opaque fs-hardlinks run-mount-bind run-mount-tmpfs)

"$repo/scripts/ensure-packages" buildah docker.io python3
mkdir -p "$out_dir"
work=$(mktemp -d /tmp/kiln-ref-buildah.XXXXXX)
started=
cleanup() {
    rm -rf "$work"
    if [ -n "$started" ] && [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

export DOCKER_HOST="unix://$dir/docker.sock"
if ! /usr/bin/docker version >/dev/null 2>&1; then
    dockerd --data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$dir/docker.sock" \
        --pidfile "$dir/pid" --bridge=none --iptables=false --ip6tables=false \
        >"$dir/dockerd.log" 2>&1 &
    started=1
    for _ in $(seq 100); do /usr/bin/docker version >/dev/null 2>&1 && break; sleep 0.2; done
fi
/usr/bin/docker save -o "$work/base.tar" kiln-ref/busybox:1
buildah rmi -f kiln-ref/busybox:1 >/dev/null 2>&1 || true
buildah pull -q docker-archive:"$work/base.tar" >/dev/null

(cd "$repo" && cargo build -q -p kiln-tests --bin image-facts)
facts="${CARGO_TARGET_DIR:-$repo/target}/debug/image-facts"

names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${default_cases[@]}")
for name in "${names[@]}"; do
    ctx=$work/ctx/$name
    mkdir -p "$ctx"
    cp -a "$here/cases/$name/." "$ctx/"
    find "$ctx" -type d -exec chmod 0755 {} +
    find "$ctx" -type f -perm /111 -exec chmod 0755 {} +
    find "$ctx" -type f ! -perm /111 -exec chmod 0644 {} +
    find "$ctx" -exec touch -h -d "@$context_mtime" {} +
    args=(bud --runtime /usr/sbin/runc --format docker --layers --no-cache --network none
        -t "kiln-ref/buildah-$name")
    eval "$(python3 - "$here/cases/$name/case.json" <<'PY'
import json, shlex, sys
c = json.load(open(sys.argv[1]))
a = [x for k, v in c.get("build_args", {}).items() for x in ("--build-arg", "%s=%s" % (k, v))]
if c.get("target"):
    a += ["--target", c["target"]]
print("extra=(%s)" % " ".join(shlex.quote(x) for x in a))
PY
)"
    if ! buildah "${args[@]}" "${extra[@]}" "$ctx" >"$work/$name.log" 2>&1; then
        echo "record-buildah: $name: failed: $(tail -1 "$work/$name.log")" >&2
        continue
    fi
    buildah push -q "kiln-ref/buildah-$name" docker-archive:"$work/$name.tar" >/dev/null
    "$facts" --base "$work/base.tar" --drop-config Hostname --drop-history-comments -o "$out_dir/$name.json" "$work/$name.tar"
    echo "record-buildah: $name: ok" >&2
done
