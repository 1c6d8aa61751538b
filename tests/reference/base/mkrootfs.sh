#!/bin/bash
# Make the reference corpus's base root filesystem in DIR: Debian's static busybox, a symlink
# for every applet, a few users and groups, and fixed modes, owners and mtimes.
#
#   tests/reference/base/mkrootfs.sh DIR          # the tree (DIR must not exist or be empty)
#   tests/reference/base/mkrootfs.sh DIR OUT.tar  # the tree, then a deterministic tar of it
#   BUSYBOX=path/to/busybox mkrootfs.sh DIR ...   # with that busybox binary (another
#                                                 # architecture's); the applets are the host's
#
# BuildKit's reference images start FROM this tree (imported into dockerd as
# kiln-ref/busybox:1 by record.sh); Kiln's integration tests build the same tree into their
# base image, so both sides run every case on identical bytes. Must run as root (it chowns).
set -euo pipefail

dir=${1:?usage: mkrootfs.sh DIR [OUT.tar]}
out=${2:-}

if [ "$(id -u)" != 0 ]; then
    echo "mkrootfs.sh: must run as root (the tree has files owned by uid 1000)" >&2
    exit 1
fi
if ! [ -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
busybox=/bin/busybox
binary=${BUSYBOX:-$busybox}

if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "mkrootfs.sh: $dir exists and is not empty" >&2
    exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

umask 022
for d in bin sbin usr/bin usr/sbin usr/local/bin etc root home/app tmp var/tmp dev proc sys; do
    mkdir -p "$dir/$d"
done
install -m 0755 "$binary" "$dir/bin/busybox"

# One absolute symlink per applet; `linuxrc` (at the root) is left out.
"$busybox" --list-full | while read -r applet; do
    case "$applet" in
        */*) ;;
        *) continue ;;
    esac
    [ "$applet" = bin/busybox ] && continue
    [ -e "$dir/$applet" ] || [ -L "$dir/$applet" ] || ln -s /bin/busybox "$dir/$applet"
done

cat >"$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$dir/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
GROUP
# Present in the base so that the files a runtime mounts over them never show up in a layer.
: >"$dir/etc/hosts"
: >"$dir/etc/resolv.conf"
: >"$dir/etc/hostname"
printf 'kiln reference base\n' >"$dir/etc/motd"

chown -R 0:0 "$dir"
chown 1000:1000 "$dir/home/app"
chmod 0755 "$dir" "$dir/home/app"
chmod 0700 "$dir/root"
chmod 1777 "$dir/tmp" "$dir/var/tmp"
chmod 0644 "$dir/etc/passwd" "$dir/etc/group" "$dir/etc/hosts" "$dir/etc/resolv.conf" \
    "$dir/etc/hostname" "$dir/etc/motd"
# Fixed mtimes (SOURCE_DATE_EPOCH, default 0), symlinks included.
find "$dir" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +

if [ -n "$out" ]; then
    tar -C "$dir" --sort=name --numeric-owner --format=pax \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -cf "$out" .
fi
