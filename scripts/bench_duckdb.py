"""`fibonacco bench pipelines`' DuckDB baseline: registers each lake table as its current
state (latest version per key, deletes dropped — what the lake gives DataFusion, with the
same shortcut for inserts-only tables), then runs one round of the given queries for each
line read from standard input, printing one JSON line per round: {"each": [seconds per
query], "rows": […]}. The bench takes turns between the engines, one round each, so a
slow minute on the machine falls on all of them rather than on one engine's rounds."""

import json
import sys
import time
from pathlib import Path

import duckdb

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
    for _ in sys.stdin:
        rows, each = [], []
        for q in queries:
            started = time.perf_counter()
            result = con.execute(q).fetchall()
            each.append(time.perf_counter() - started)
            rows.append(result)
        print(json.dumps({"each": each, "rows": [[list(map(str, r)) for r in rs] for rs in rows]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
