#!/usr/bin/env bash
# Re-vendor the web pages' JavaScript and CSS from npm at pinned versions (no build step, no CDN).
# Only the dist files the pages load and each package's licence are kept, under src/corral/ui/static/vendor.
set -euo pipefail
cd "$(dirname "$0")/.."
HTMX=2.0.11 SSE=2.2.4 UPLOT=1.6.9
DEST=src/corral/ui/static/vendor
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "htmx.org@$HTMX" "htmx-ext-sse@$SSE" "uplot@$UPLOT" >/dev/null)
unpack() { mkdir -p "$TMP/$1" && tar xzf "$TMP/$2" -C "$TMP/$1"; }
unpack htmx "htmx.org-$HTMX.tgz"
unpack sse "htmx-ext-sse-$SSE.tgz"
unpack uplot "uplot-$UPLOT.tgz"
rm -rf "$DEST" && mkdir -p "$DEST"
cp "$TMP/htmx/package/dist/htmx.min.js" "$DEST/htmx.min.js"
cp "$TMP/htmx/package/LICENSE" "$DEST/htmx.LICENSE"
cp "$TMP/sse/package/dist/sse.min.js" "$DEST/htmx-ext-sse.min.js"
cp "$TMP/sse/package/LICENSE" "$DEST/htmx-ext-sse.LICENSE"
cp "$TMP/uplot/package/dist/uPlot.iife.min.js" "$DEST/uPlot.iife.min.js"
cp "$TMP/uplot/package/dist/uPlot.min.css" "$DEST/uPlot.min.css"
cp "$TMP/uplot/package/LICENSE" "$DEST/uPlot.LICENSE"
cat > "$DEST/VERSIONS" <<VERSIONS
htmx.org $HTMX
htmx-ext-sse $SSE
uplot $UPLOT
VERSIONS
echo "vendored into $DEST:"; ls "$DEST"
