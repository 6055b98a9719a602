"""`fibonacco bench pipelines`' DuckDB baseline: registers each lake table as its current
state (latest version per key, deletes dropped — what the lake gives DataFusion, with the
same shortcut for inserts-only tables), then
times the given queries. Prints one JSON line: {"seconds": …, "each": [median seconds per query over BENCH_ROUNDS
runs, 3 by default], "rows": […]}."""

import glob
import json
import os
import statistics
import sys
import time
from pathlib import Path

import duckdb

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TABLES = ["crm_customers", "customer_activities", "outbound_campaigns", "outbound_campaign_recipients", "orders"]


def main() -> int:
    lake = Path(sys.argv[1])
    queries = sys.argv[2:]
    con = duckdb.connect()
    manifest = json.loads((lake / "_manifest.json").read_text())
    for table in TABLES:
        entries = [f for f in manifest["files"] if f["table"] == table]
        files = [str(lake / f["path"]) for f in entries]
        meta = manifest["tables"][table]
        keys = ", ".join(meta["keys"])
        # The same rule as the lake's DataFusion view: inserts-only tables need no
        # latest-version pass.
        if meta.get("truncated_at") is None and all(f.get("inserts_only") for f in entries):
            con.execute(f"create view {table} as select * from read_parquet({files!r}, union_by_name = true)")
            continue
        con.execute(
            f"""create view {table} as select * exclude (_rn) from (
                  select *, row_number() over (partition by {keys} order by _lsn desc, _seq desc) as _rn
                  from read_parquet({files!r}, union_by_name = true))
                where _rn = 1 and _op not in ('d', 't')"""
        )
    # Each query ROUNDS times, the median kept: one run on two shared cores varies by 30 %.
    rows, each = [], []
    for q in queries:
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            result = con.execute(q).fetchall()
            times.append(time.perf_counter() - started)
        rows.append(result)
        each.append(statistics.median(times))
    print(json.dumps({"seconds": sum(each), "each": each, "rows": [[list(map(str, r)) for r in rs] for rs in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
