#!/usr/bin/env bash
# Build a small OCI image offline: busybox-static applets, bash with its libraries, a marker file,
# env IMAGE_VAR=from-image, working dir /srv. Used by the container tests and bench W8.
# Usage: scripts/test-image.sh LAYOUT_DIR   -> an OCI layout with the image tagged "test"
set -euo pipefail
LAYOUT=${1:?usage: $0 LAYOUT_DIR}
for t in umoci busybox bash ldd; do command -v "$t" >/dev/null || { echo "test-image.sh: $t missing" >&2; exit 1; }; done
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
rm -rf "$LAYOUT"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:test"
umoci unpack --image "$LAYOUT:test" "$WORK/bundle" >/dev/null
R="$WORK/bundle/rootfs"
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/io" "$R/srv"
cp "$(command -v busybox)" "$R/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || [ "$applet" = bash ] || [ -e "$R/bin/$applet" ] || ln -s busybox "$R/bin/$applet"
done
cp "$(command -v bash)" "$R/bin/bash"
for lib in $(ldd "$(command -v bash)" | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
done
echo corral-test-image > "$R/etc/image-marker"
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
umoci repack --image "$LAYOUT:test" "$WORK/bundle"
umoci config --image "$LAYOUT:test" --config.env IMAGE_VAR=from-image --config.workingdir /srv --config.cmd /bin/sh
