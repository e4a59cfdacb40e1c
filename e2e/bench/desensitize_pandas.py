#!/usr/bin/env python3
"""The `agent desensitize` bench workload done with pandas, for comparison.

Usage: desensitize_pandas.py INPUT.csv OUTPUT.csv

Same plan as agent/examples/bench_desensitize.rs: name masked to its first
character, resident id hashed (HMAC-SHA256, first 16 bytes in hex, "p_"
prefix), mobile masked to 3+4, address cut to 6 characters, birth date cut
to the month, income and free text kept. Read in chunks so memory stays
bounded. Prints seconds, MB/s, rows/s and peak RSS. Single-threaded.
"""

import hashlib
import hmac
import os
import resource
import sys
import time

try:
    import pandas as pd
except ImportError:
    print("pandas is not available: pip install pandas", file=sys.stderr)
    sys.exit(2)

KEY = b"bench-key-0123456789abcdef"
CHUNK = 200_000


def pseudonym(value):
    if not isinstance(value, str) or value == "":
        return value
    return "p_" + hmac.new(KEY, value.encode(), hashlib.sha256).digest()[:16].hex()


def mask(series, first, last):
    def one(v):
        if not isinstance(v, str):
            return v
        n = len(v)
        if n <= first + last:
            return "*" * n
        return v[:first] + "*" * (n - first - last) + (v[n - last:] if last else "")

    return series.map(one)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    src, dst = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    rows = 0
    header = True
    for chunk in pd.read_csv(src, dtype=str, keep_default_na=False, chunksize=CHUNK):
        chunk["姓名"] = mask(chunk["姓名"], 1, 0)
        chunk["身份证号"] = chunk["身份证号"].map(pseudonym)
        chunk["手机号"] = mask(chunk["手机号"], 3, 4)
        chunk["地址"] = chunk["地址"].str[:6]
        chunk["出生日期"] = chunk["出生日期"].str[:7]
        chunk.to_csv(dst, mode="w" if header else "a", header=header, index=False)
        header = False
        rows += len(chunk)
    secs = time.perf_counter() - start
    mb = os.path.getsize(src) / 1e6
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"pandas {pd.__version__} {rows:>10} rows  {secs:7.2f} s  {mb / secs:7.1f} MB/s"
        f"  {rows / secs:10.0f} rows/s  peak RSS {rss:.1f} MiB"
    )


if __name__ == "__main__":
    main()
