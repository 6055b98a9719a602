"""Shared helpers for the notebooks: where the lake and the database are, and reading
the newest derived results. Settings come from the environment (`INGEST_LAKE`,
`DATABASE_URL`), as for the `fibonacco` binary; `.stack/env` is read when present."""

import glob
import os
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent


def _stack_env() -> dict:
    env = {}
    path = ROOT / ".stack" / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


def setting(key: str, default: str | None = None) -> str | None:
    return os.environ.get(key) or _stack_env().get(key) or default


def lake() -> Path:
    path = Path(setting("INGEST_LAKE", "lake"))
    return path if path.is_absolute() else ROOT / path


def derived(name: str) -> pl.DataFrame:
    """The newest run's Parquet of `_derived/<name>/`."""
    files = sorted(glob.glob(str(lake() / "_derived" / name / "as_of=*" / "*.parquet")))
    if not files:
        raise FileNotFoundError(f"no {name} results under {lake()}/_derived: run `fibonacco pipelines run` first")
    return pl.read_parquet(files[-1])


def table(name: str) -> pl.DataFrame:
    """A captured table's change files as written (latest version per key not applied)."""
    files = glob.glob(str(lake() / name / "**" / "*.parquet"), recursive=True)
    if not files:
        raise FileNotFoundError(f"no {name} files under {lake()}: run `fibonacco ingest` first")
    frames = [pl.read_parquet(f) for f in files]
    changes = pl.concat(frames, how="diagonal_relaxed")
    # The current state: the latest change per primary key, deletes dropped.
    latest = changes.sort(["_lsn", "_seq"]).group_by("id", maintain_order=True).last()
    return latest.filter(pl.col("_op") != "d")


def query(sql: str, *params) -> pl.DataFrame:
    """Rows of a query against the platform's database (analytics tables), as a frame."""
    import psycopg

    url = setting("DATABASE_URL")
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("set app.bypass_rls = 'on'")
        cur.execute(sql, params)
        columns = [d.name for d in cur.description]
        return pl.DataFrame(cur.fetchall(), schema=columns, orient="row")


def show(fig) -> None:
    """Shows a figure inline, after checking that it drew data (bars, points, a curve of
    more than two points, an image): a chart with nothing on it fails the notebook."""
    drawn = 0
    for ax in fig.axes:
        drawn += len(ax.patches) + len(ax.images)
        drawn += sum(1 for line in ax.lines if len(line.get_xdata()) > 2)
        drawn += sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets"))
    title = next((ax.get_title() for ax in fig.axes if ax.get_title()), "untitled")
    if drawn == 0:
        raise AssertionError(f"the figure '{title}' drew no data")
    from IPython.display import display
    import matplotlib.pyplot as plt

    display(fig)
    # Displayed once: the inline backend would show it again at the end of the cell.
    plt.close(fig)
