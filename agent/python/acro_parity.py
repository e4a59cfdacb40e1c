"""ACRO's verdicts on the tables of the parity test.

Usage: acro_parity.py DIR

For every DIR/*.csv (columns a, b, v: one contributor a row) this runs
ACRO's crosstab twice, as an analyst would: counts of a by b, and the sum
of v by a and b, with ACRO's default risk appetite and no suppression. It
writes DIR/<case>.acro.json: for each table, the row and column labels and,
per check, the [row, column] cells ACRO flags.

DIR/totals/<case>.csv holds the same table as totals (a, b, n, sum of v):
ACRO cannot check a table it did not build from the contributions and
takes it as a custom output, for a person; its status goes in "totals".
"""

import json
import logging
import pathlib
import sys

import pandas as pd
from acro import ACRO


def flagged(output) -> dict:
    cells = output.sdc.get("cells", {})
    return {name: sorted(map(list, pos)) for name, pos in cells.items()}


def run_case(acro: ACRO, path: pathlib.Path) -> dict:
    df = pd.read_csv(path, dtype={"a": str, "b": str, "v": "int64"})
    before = set(acro.results.results)
    counts = acro.crosstab(df.a, df.b)
    sums = acro.crosstab(df.a, df.b, values=df.v, aggfunc="sum")
    new = [k for k in acro.results.results if k not in before]
    out_count, out_sum = (acro.results.results[k] for k in new)
    return {
        "rows": [str(x) for x in counts.index],
        "columns": [str(x) for x in counts.columns],
        "sumRows": [str(x) for x in sums.index],
        "sumColumns": [str(x) for x in sums.columns],
        "count": {"status": out_count.status, "cells": flagged(out_count)},
        "sum": {"status": out_sum.status, "cells": flagged(out_sum)},
        "totals": totals_status(acro, path.parent / "totals" / path.name),
    }


def totals_status(acro: ACRO, path: pathlib.Path) -> str | None:
    if not path.exists():
        return None
    before = set(acro.results.results)
    acro.custom_output(str(path))
    new = [k for k in acro.results.results if k not in before]
    return acro.results.results[new[0]].status


def main() -> None:
    logging.disable(logging.CRITICAL)
    acro = ACRO(suppress=False)
    for path in sorted(pathlib.Path(sys.argv[1]).glob("*.csv")):
        result = run_case(acro, path)
        path.with_suffix(".acro.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
