#!/bin/bash
# Remake the archives of this case, byte for byte (run as root: the tree has owners).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pkg" "$work/remote"
printf 'local archive\n' >"$work/pkg/hello.txt"
printf 'remote archive\n' >"$work/remote/remote.txt"
chmod 0755 "$work/pkg" "$work/remote"
chmod 0640 "$work/pkg/hello.txt" "$work/remote/remote.txt"
chown -R 1000:1000 "$work/pkg" "$work/remote"
find "$work" -exec touch -h -d @1000000 {} +
tar -C "$work" --sort=name --numeric-owner --format=gnu -cf archive.tar pkg
tar -C "$work" --sort=name --numeric-owner --format=gnu -cf - remote | gzip -9 -n >serve/remote.tar.gz
