"""The reference's CSV group-by, in one place: pyarrow over the whole file with its own threads.

The Celery peer's task runs it (bench/celery_peer.py, in the peer's virtualenv) and bench/csv_report.py
times it in its own process; neither needs the other's dependencies to import this.
"""

from __future__ import annotations

from typing import Any

NUMBER = r"^[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*$"
"""A cell counted as a number: the same rule as longrun's csv-report (surrounding blanks allowed)."""


def group_by(path: str, key: str, metrics: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """Rows read, and per group its count and each metric's count, sum, min and max."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    columns = [key, *metrics]
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(include_columns=columns, column_types=dict.fromkeys(columns, pa.string())),
    )
    data: dict[str, Any] = {"g": table[key]}
    aggregations: list[Any] = [("g", "count")]
    for name in metrics:
        cells = table[name]
        data[name] = pc.cast(
            pc.utf8_trim(pc.if_else(pc.match_substring_regex(cells, NUMBER), cells, None), " \t"), pa.float64()
        )
        aggregations += [(name, "count"), (name, "sum"), (name, "min"), (name, "max")]
    return table.num_rows, pa.table(data).group_by("g").aggregate(aggregations).to_pylist()
