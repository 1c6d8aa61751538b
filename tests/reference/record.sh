#!/bin/bash
# Record what BuildKit builds for every case of the reference corpus.
#
#   tests/reference/record.sh            # every case
#   tests/reference/record.sh CASE...    # only these (directory names under cases/)
#
# It starts a private dockerd (BuildKit inside dockerd 20.10, from Debian's docker.io) or reuses
# one already listening in $KILN_REF_DOCKER_DIR, imports the base image made by
# base/mkrootfs.sh as kiln-ref/busybox:1, builds each case that is not `derived`, `docker
# save`s it and writes expected/CASE.json with image-facts (or expected/CASE.error.json for a
# case that fails). Runs as root; not part of CI; the recorded JSON is checked in.
#
# Environment:
#   KILN_REF_DOCKER_DIR   the daemon's directory (default /tmp/kiln-ref-docker)
#   KILN_REF_KEEP_DOCKERD=1  leave a daemon this script started running when it exits
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cases_dir=$here/cases
expected_dir=$here/expected
dir=${KILN_REF_DOCKER_DIR:-/tmp/kiln-ref-docker}
base_image=kiln-ref/busybox:1
# Files of each case's context get these mtimes and git's modes, so that a COPY records the same
# metadata on every machine. Kiln's tests stage contexts the same way (facts::stage_context).
context_mtime=1000000
docker=/usr/bin/docker # not /usr/local/bin/docker: that client has no BuildKit

export DOCKER_HOST="unix://$dir/docker.sock" DOCKER_BUILDKIT=1

"$repo/scripts/ensure-packages" docker.io busybox-static python3 tar gzip bzip2 xz-utils zstd

mkdir -p "$dir" "$expected_dir"
work=$(mktemp -d /tmp/kiln-ref-record.XXXXXX)
started=
cleanup() {
    rm -rf "$work"
    if [ -n "$started" ] && [ -z "${KILN_REF_KEEP_DOCKERD:-}" ] && [ -f "$dir/pid" ]; then
        local pid
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
}
trap cleanup EXIT

if ! "$docker" version >/dev/null 2>&1; then
    echo "record: starting dockerd in $dir" >&2
    dockerd --data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$dir/docker.sock" \
        --pidfile "$dir/pid" --bridge=none --iptables=false --ip6tables=false \
        >"$dir/dockerd.log" 2>&1 &
    started=1
    for _ in $(seq 100); do "$docker" version >/dev/null 2>&1 && break; sleep 0.2; done
    "$docker" version >/dev/null || { tail -20 "$dir/dockerd.log" >&2; exit 1; }
fi

echo "record: building image-facts" >&2
(cd "$repo" && cargo build -q -p kiln-tests --bin image-facts)
facts="${CARGO_TARGET_DIR:-$repo/target}/debug/image-facts"

echo "record: importing the base image $base_image" >&2
"$here/base/mkrootfs.sh" "$work/rootfs" "$work/base.tar"
"$docker" rmi -f "$base_image" >/dev/null 2>&1 || true
"$docker" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /' \
    "$work/base.tar" "$base_image" >/dev/null
"$docker" save -o "$work/base-image.tar" "$base_image"
"$facts" -o "$expected_dir/_base.json" "$work/base-image.tar"

server=$("$docker" version --format '{{.Server.Version}}')
cat >"$expected_dir/_recorder.json" <<EOF
{
  "builder": "BuildKit inside dockerd $server (Debian docker.io)",
  "buildkit": "v0.8.4-0.20221020190723-eeb7b65ab7d6 (vendored by moby 20.10.24)",
  "base_image": "$base_image",
  "base_history": 1,
  "context_mtime": $context_mtime
}
EOF

# Print the options of a case as shell assignments: derived, expect, target, and the arrays
# build_args (NAME=VALUE) and secrets (ID=FILE, FILE relative to the case's directory).
case_options() {
    python3 - "$1" <<'PY'
import json, shlex, sys
try:
    c = json.load(open(sys.argv[1]))
except FileNotFoundError:
    c = {}
print("derived=%s" % ("1" if c.get("derived") else ""))
print("expect=%s" % shlex.quote(c.get("expect", "success")))
print("target=%s" % shlex.quote(c.get("target", "")))
args = " ".join(shlex.quote("%s=%s" % kv) for kv in c.get("build_args", {}).items())
print("build_args=(%s)" % args)
secrets = " ".join(shlex.quote("%s=%s" % kv) for kv in c.get("secrets", {}).items())
print("secrets=(%s)" % secrets)
PY
}

# Write the error record of a failed build: the exit status, the failing step and the message.
error_record() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
name, status, log = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read()
lines = [l.rstrip() for l in log.splitlines() if l.strip()]
step = next((l.strip() for l in reversed(lines) if l.startswith(" > [")), None)
error = lines[-1] if lines else ""
# The resolver's address differs from machine to machine.
error = re.sub(r" on [0-9a-fA-F.:\[\]]+:53:", " on <resolver>:53:", error)
rec = {"case": name, "exit_status": status, "error": error}
if step:
    rec["failed_step"] = step
print(json.dumps(rec, indent=2, ensure_ascii=False))
PY
}

# Write a docker-archive with no layers for IMAGE, from the config in dockerd's image store.
save_without_layers() {
    local image=$1 out=$2 id tmp
    id=$("$docker" image inspect --format '{{.Id}}' "$image")
    tmp=$work/save-$$
    mkdir -p "$tmp"
    cp "$dir/data/image/overlay2/imagedb/content/sha256/${id#sha256:}" "$tmp/config.json"
    printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":[]}]' "$image" >"$tmp/manifest.json"
    tar -C "$tmp" -cf "$out" config.json manifest.json
    rm -rf "$tmp"
}

stage_context() {
    local src=$1 dst=$2
    mkdir -p "$dst"
    cp -a "$src/." "$dst/"
    find "$dst" -type d -exec chmod 0755 {} +
    find "$dst" -type f -perm /111 -exec chmod 0755 {} +
    find "$dst" -type f ! -perm /111 -exec chmod 0644 {} +
    chown -R -h 0:0 "$dst"
    find "$dst" -exec touch -h -d "@$context_mtime" {} +
}

if [ $# -gt 0 ]; then
    names=("$@")
else
    names=()
    for d in "$cases_dir"/*/; do names+=("$(basename "$d")"); done
fi

recorded=0 errors=0 derived_count=0 surprises=()
for name in "${names[@]}"; do
    case_dir=$cases_dir/$name
    [ -f "$case_dir/Dockerfile" ] || { echo "record: no case $name" >&2; exit 1; }
    derived='' expect='' target='' build_args=() secrets=()
    eval "$(case_options "$case_dir/case.json")"
    if [ -n "$derived" ]; then
        derived_count=$((derived_count + 1))
        echo "record: $name: derived by hand, not built" >&2
        continue
    fi
    ctx=$work/ctx/$name
    stage_context "$case_dir" "$ctx"
    args=(build --network none --no-cache --progress plain -t "kiln-ref/case-$name")
    [ -n "$target" ] && args+=(--target "$target")
    for a in "${build_args[@]}"; do args+=(--build-arg "$a"); done
    for s in "${secrets[@]}"; do args+=(--secret "id=${s%%=*},src=$ctx/${s#*=}"); done
    status=0
    "$docker" "${args[@]}" "$ctx" >"$work/$name.log" 2>&1 || status=$?
    rm -f "$expected_dir/$name.json" "$expected_dir/$name.error.json"
    if [ "$status" != 0 ]; then
        error_record "$name" "$status" "$work/$name.log" >"$expected_dir/$name.error.json"
        errors=$((errors + 1))
        echo "record: $name: failed ($status): $(tail -1 "$work/$name.log")" >&2
        [ "$expect" = error ] || surprises+=("$name failed but was expected to build")
        continue
    fi
    [ "$expect" = error ] && surprises+=("$name built but was expected to fail")
    if ! "$docker" save -o "$work/$name.tar" "kiln-ref/case-$name" 2>"$work/$name.save.log"; then
        # dockerd cannot save an image without layers ("empty export"); its config is still in
        # the image store, byte for byte as BuildKit wrote it: wrap it in a docker-archive.
        grep -q 'empty export' "$work/$name.save.log" || { cat "$work/$name.save.log" >&2; exit 1; }
        save_without_layers "kiln-ref/case-$name" "$work/$name.tar"
    fi
    "$facts" --base "$work/base-image.tar" -o "$expected_dir/$name.json" "$work/$name.tar"
    rm -f "$work/$name.tar"
    recorded=$((recorded + 1))
    echo "record: $name: ok" >&2
done

echo "record: $recorded images, $errors errors, $derived_count derived" >&2
for s in "${surprises[@]}"; do echo "record: NOTE: $s" >&2; done
