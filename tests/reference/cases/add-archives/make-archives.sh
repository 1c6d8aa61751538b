#!/bin/bash
# Remake the archives of this case, byte for byte (run as root: the tree has owners).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pkg/bin" "$work/pkg/share/doc"
printf 'tool\n' >"$work/pkg/bin/tool"
printf 'secret\n' >"$work/pkg/secret"
printf 'readme\n' >"$work/pkg/share/doc/README"
ln -s bin/tool "$work/pkg/link"
ln "$work/pkg/bin/tool" "$work/pkg/hard"
chmod 0755 "$work/pkg" "$work/pkg/bin" "$work/pkg/share" "$work/pkg/share/doc"
chmod 4755 "$work/pkg/bin/tool"
chmod 0600 "$work/pkg/secret"
chmod 0644 "$work/pkg/share/doc/README"
chown 1000:1000 "$work/pkg"
chown 1000:50 "$work/pkg/secret"
chown -h 0:0 "$work/pkg/link"
find "$work/pkg" -exec touch -h -d @1000000 {} +
tar -C "$work" --sort=name --numeric-owner --format=gnu -cf archive.tar pkg
gzip -9 -n -c archive.tar >archive.tar.gz
bzip2 -9 -c archive.tar >archive.tar.bz2
xz -6 -c archive.tar >archive.tar.xz
zstd -q -19 -c archive.tar >archive.tar.zst
printf 'not an archive\n' | gzip -9 -n >plain.txt.gz
cp archive.tar renamed-archive.bin
