#!/usr/bin/env python3
"""ACRO on the contributor table of `make bench-scan`, for comparison.

Usage: tables_acro.py DIR

Reads DIR/table/files/contrib.csv (columns a, b, v) and runs the same
table checks as `agent scan` does on it through ACRO: a crosstab of counts
(threshold, zeros) and of the sum of v (threshold, nk-rule, p-ratio),
with ACRO's default risk appetite. Prints the wall time of reading the
file and of both crosstabs.
"""

import contextlib
import io
import logging
import pathlib
import sys
import time

from acro import ACRO


def main() -> None:
    logging.disable(logging.CRITICAL)
    path = pathlib.Path(sys.argv[1]) / "table" / "files" / "contrib.csv"
    start = time.perf_counter()
    import pandas as pd

    with contextlib.redirect_stdout(io.StringIO()):
        acro = ACRO(suppress=False)
        df = pd.read_csv(path, dtype={"a": str, "b": str, "v": "int64"})
        acro.crosstab(df.a, df.b)
        acro.crosstab(df.a, df.b, values=df.v, aggfunc="sum")
    secs = time.perf_counter() - start
    statuses = [o.status for o in acro.results.results.values()]
    print(f"acro {len(df)} contributors, counts and sums: {secs:.2f} s wall, verdicts {statuses}")


if __name__ == "__main__":
    main()
