"""CPU per csv-report chunk in one process: `CsvReport.process_chunk` over a local file, no host or storage.

Plans the generated input (`bench.csv_report.generate_csv`, 100 MB by default) in chunks of `--chunk-mib`
and runs its full-size chunks:
- `--threads 1` (default): one after another, each `--repeats` times; CPU seconds of a chunk = the best of its
  runs; prints the best and the median over the chunks, and the minor page faults of a chunk;
- `--threads N`: every chunk once on N threads at once (`--threads 4 --chunk-mib 8` is what one worker
  process does with the shipped settings); prints CPU seconds and page faults per chunk and how much the
  process's peak RSS (VmHWM) grew.

Another version of the code is measured by putting its `kinds` package first:
`git archive <commit> kinds | tar -x -C /tmp/before` and `--kinds-from /tmp/before`.

Run: `.venv/bin/python -m bench.csv_chunk_cpu [--size-mb 100] [--chunk-mib 16] [--threads 1] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time
from typing import Any

from bench.csv_report import GROUP_BY, METRICS, generate_csv


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))


def _cpu_and_faults() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--chunk-mib", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each chunk with --threads 1")
    parser.add_argument("--kinds-from", help="a directory holding another version of the kinds package")
    args = parser.parse_args(argv)
    if args.kinds_from:
        sys.path.insert(0, args.kinds_from)
    from kinds.base import FileSource
    from kinds.csv_report import CsvReport

    path = generate_csv(args.size_mb)
    kind = CsvReport()
    source = FileSource(path)
    options = kind.parse_options({"group_by": GROUP_BY, "metrics": METRICS})
    chunk_bytes = args.chunk_mib * 1024 * 1024
    plan: list[dict[str, Any]] = kind.plan(source, options, chunk_bytes, 100_000)
    # Boundaries fall on row ends near the targets: "full" is within a few rows of the chunk size.
    full = [chunk for chunk in plan[1:] if int(chunk["end"]) - int(chunk["start"]) >= 0.99 * chunk_bytes]
    kind.process_chunk(source, plan[0], options, 1, lambda: False)  # imports, pools, page cache

    def run(chunk: dict[str, Any]) -> None:
        kind.process_chunk(source, chunk, options, 1, lambda: False)

    if args.threads <= 1:
        best: list[float] = []
        faults: list[int] = []
        for chunk in full:
            runs = []
            for _ in range(args.repeats):
                cpu, minflt = time.process_time(), _cpu_and_faults()[1]
                run(chunk)
                runs.append(time.process_time() - cpu)
                faults.append(_cpu_and_faults()[1] - minflt)
            best.append(min(runs))
        print(
            f"{len(full)} chunks of {args.chunk_mib} MiB, 1 thread: CPU s per chunk best {min(best):.4f}, "
            f"median {statistics.median(best):.4f}; minor faults per run median {statistics.median(faults):.0f}"
        )
        return 0
    pending = list(full)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not pending:
                    return
                chunk = pending.pop()
            run(chunk)

    peak_before = _peak_rss_mib()
    cpu, minflt = _cpu_and_faults()
    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu_after, minflt_after = _cpu_and_faults()
    print(
        f"{len(full)} chunks of {args.chunk_mib} MiB on {args.threads} threads: CPU s per chunk "
        f"{(cpu_after - cpu) / len(full):.4f}, minor faults per chunk {(minflt_after - minflt) // len(full)}, "
        f"peak RSS +{_peak_rss_mib() - peak_before:.0f} MiB, wall {wall:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
