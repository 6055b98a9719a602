"""Executes every notebook in notebooks/ with nbclient (the project venv's kernel), so
they never rot. Settings (INGEST_LAKE, DATABASE_URL) come from the environment. Executed
copies go to the directory given as the first argument (default: a temp dir), never over
the committed, output-free notebooks. Exit status 1 names the failing notebook and cell."""

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="fib-notebooks-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    failed = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
        try:
            client.execute()
            print(f"ok      {path.name}")
        except CellExecutionError as e:
            failed.append(path.name)
            print(f"FAILED  {path.name}\n{e}", file=sys.stderr)
        nbformat.write(nb, out / path.name)
    print(f"executed notebooks in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
