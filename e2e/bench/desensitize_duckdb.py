#!/usr/bin/env python3
"""The `agent desensitize` bench workload done with DuckDB, for comparison.

Usage: desensitize_duckdb.py DIR

Reads DIR/input.csv (made by agent/examples/bench_desensitize.rs) and
applies the same plan in SQL: name masked to its first character, resident
id pseudonymised with a keyed SHA-256 (DuckDB has no HMAC: sha256(key ||
value), first 16 bytes in hex, "p_" prefix), mobile masked to 3+4, address
cut to 6 characters, birth date cut to the month, income and free text
kept; written to CSV in input order. Runs on 1 thread, then 2, and prints
the wall time of each. When DIR/times.json holds the agent's wall times
(written by the Rust bench), prints how many times faster the agent is.
"""

import json
import pathlib
import sys
import time

try:
    import duckdb
except ImportError:
    print("duckdb: not installed, its comparison skipped (make python-tools)")
    sys.exit(0)

KEY = "bench-key-0123456789abcdef"

SQL = """
COPY (
  SELECT
    CASE WHEN length("姓名") <= 1 THEN repeat('*', length("姓名"))
         ELSE left("姓名", 1) || repeat('*', length("姓名") - 1) END AS "姓名",
    'p_' || left(sha256('{key}' || "身份证号"), 32) AS "身份证号",
    CASE WHEN length("手机号") <= 7 THEN repeat('*', length("手机号"))
         ELSE left("手机号", 3) || repeat('*', length("手机号") - 7) || right("手机号", 4) END AS "手机号",
    left("地址", 6) AS "地址",
    left("出生日期", 7) AS "出生日期",
    "收入",
    "备注"
  FROM read_csv('{input}', header = true, all_varchar = true)
) TO '{output}' (HEADER, DELIMITER ',')
"""


def run(threads: int, inp: pathlib.Path, out: pathlib.Path) -> float:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = true")
    start = time.perf_counter()
    con.execute(SQL.format(key=KEY, input=inp, output=out))
    secs = time.perf_counter() - start
    con.close()
    return secs


def main() -> None:
    d = pathlib.Path(sys.argv[1])
    inp, out = d / "input.csv", d / "duckdb.csv"
    mb = inp.stat().st_size / 1e6
    times = json.loads((d / "times.json").read_text()) if (d / "times.json").exists() else {}
    print(f"duckdb {duckdb.__version__}, same plan in SQL (keyed SHA-256 for the pseudonyms)")
    for threads in (1, 2):
        secs = run(threads, inp, out)
        line = f"duckdb/{threads}t   {secs:6.2f} s wall  {mb / secs:7.1f} MB/s"
        agent = times.get(f"agent{threads}")
        if agent:
            line += f"  | agent/{threads}t {agent:.2f} s: the agent is {secs / agent:.1f}x faster"
        print(line)
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
