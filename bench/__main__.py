"""`make bench`: run every benchmark in one go and print its figures.

Each benchmark measures ratios or percentiles within one run on this machine; none of them is a timed
test. docs/benchmarks.md records the figures and the commands. Pass `--quick` to skip the 1 GB inputs.
"""

from __future__ import annotations

import argparse
import sys

from bench import batch_submit, cost, csv_report, devhost_overhead, history_size, streams, submit_latency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 MB inputs only (no 1 GB file)")
    args = parser.parse_args(argv)
    print("== devhost overhead (no-op activities, Azurite on disk)", flush=True)
    for key, value in devhost_overhead.run().items():
        print(f"{key}: {value}", flush=True)
    print("\n== submit latency (16 concurrent clients, 1 KB inline job)", flush=True)
    submit_latency.main([])
    sizes = "100" if args.quick else "100,1000"
    print(f"\n== csv-report vs one process ({sizes} MB)", flush=True)
    csv_report.main(["--sizes", sizes])
    print(f"\n== history bytes per job ({'1,100' if args.quick else '1,100,1000'} MB)", flush=True)
    history_size.main(["--sizes", "1,100" if args.quick else "1,100,1000"])
    print("\n== 200 job event streams: cost per stream, job throughput with and without", flush=True)
    streams.main(["--rounds", "1" if args.quick else "2"])
    print("\n== bulk submission: 1,000 jobs in one batch vs 1,000 single submits from 16 clients", flush=True)
    batch_submit.main([])
    print("\n== cost per job (storage transactions, executions, history, bytes; shipped settings)", flush=True)
    cost.main([])
    print("\n(bench.side_by_side, against Celery + Redis, needs redis-server: run it on its own)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
