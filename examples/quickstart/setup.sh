#!/usr/bin/env bash
# Makes the quickstart's base image, composeops-test/busybox:latest, when the engine does not
# have it: a tiny root file system around Debian's static busybox (package busybox-static),
# imported with `docker import`. Nothing is pulled from a registry. Idempotent.
set -euo pipefail

IMAGE=${QUICKSTART_BASE:-composeops-test/busybox:latest}
BUSYBOX=/bin/busybox

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "quickstart: $IMAGE is present" >&2
    exit 0
fi
if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" != "install ok installed" ]; then
    echo "quickstart: installing busybox-static (a static $BUSYBOX)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >&2 ||
        { echo "quickstart: install busybox-static (apt-get install busybox-static) and retry" >&2; exit 1; }
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,var/run}
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
"$BUSYBOX" --list-full | while read -r applet; do
    [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["sh"]' \
        --message "composeops quickstart base (busybox-static)" \
        - "$IMAGE" >/dev/null
echo "quickstart: made $IMAGE" >&2
