"""The fault suite's checker: expected results computed independently, and the verdict's rules.

The expected csv-report document is held to the app's own reference (`single_pass_report`, one pass of
the csv module) on generated inputs with every line ending, so the checker cannot drift from the
contract; the verdict rules are fed hand-made observations, one failure of each kind.
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest

from bench.chaos.checker import Observation, Probe, Submission, judge, judge_outage, leftover_row, percentile
from bench.chaos.workload import (
    LARGE_RAW_BYTES,
    LINE_ENDINGS,
    JobSpec,
    csv_job,
    differences,
    plan_jobs,
    result_differences,
    simulate_job,
    vector_job,
)
from jobs.requests import job_id_for
from jobs.streamed_input import BLOCK_BYTES
from kinds.base import BytesSource
from kinds.simulate import expected_checksum
from tests.kinds.reference import single_pass_report


@pytest.mark.parametrize("seed", range(12))
def test_expected_csv_report_matches_the_single_pass_reference(seed: int) -> None:
    rng = random.Random(seed)
    spec = csv_job(f"k{seed}", rng, "csv-raw")
    assert spec.body is not None
    reference = single_pass_report(BytesSource(spec.body), spec.options)
    assert result_differences(spec, reference) == []


@pytest.mark.parametrize("seed", range(3))
def test_a_large_raw_body_repeats_its_rows_and_its_expected_report_scales_with_them(seed: int) -> None:
    spec = csv_job(f"k{seed}", random.Random(seed), "csv-raw-large")
    assert spec.body is not None and len(spec.body) >= LARGE_RAW_BYTES > BLOCK_BYTES  # streamed by the API
    reference = single_pass_report(BytesSource(spec.body), spec.options)
    assert result_differences(spec, reference) == []


def test_every_tenth_raw_csv_job_is_a_large_one() -> None:
    variants = [spec.variant for spec in plan_jobs(400, 1, "chaos")]
    assert variants.count("csv-raw-large") == 10 and variants.count("csv-raw") == 90


def test_every_line_ending_is_generated() -> None:
    rng = random.Random(0)
    endings = {csv_job(f"k{i}", rng, "csv-raw").line_ending for i in range(60)}
    assert endings == set(LINE_ENDINGS)


def test_expected_simulate_checksum_is_the_kinds_definition() -> None:
    for chunks in (1, 4, 37):
        spec = simulate_job("k", random.Random(1), chunks=chunks)
        assert spec.expected == {"chunks": chunks, "checksum": expected_checksum(chunks)}


def test_expected_vectors_are_unit_length_and_zero_stays_zero() -> None:
    rng = random.Random(5)
    for i in range(20):
        spec = vector_job(f"k{i}", rng)
        for vector in spec.expected["vectors"]:
            norm = math.sqrt(sum(x * x for x in vector))
            assert norm == 0.0 or math.isclose(norm, 1.0, rel_tol=1e-12)
        body = json.loads(spec.body or b"")
        assert spec.expected["processed_vectors"] == len(body["input"]["vector_data"])


def test_job_id_is_derived_as_the_app_derives_it() -> None:
    spec = plan_jobs(1, 1, "chaos")[0]
    assert spec.job_id == job_id_for(spec.key)


def test_a_one_ulp_difference_in_a_sum_is_wrong() -> None:
    spec = csv_job("k", random.Random(3), "csv-raw")
    document = copy.deepcopy(spec.expected)
    group = next(iter(document["groups"].values()))
    group["metrics"]["amount"]["sum"] = math.nextafter(group["metrics"]["amount"]["sum"], math.inf)
    assert any("sum" in d for d in result_differences(spec, document))


def test_vectors_are_compared_to_1e_12() -> None:
    spec = vector_job("k", random.Random(2))
    close = copy.deepcopy(spec.expected)
    close["vectors"][0][0] += 1e-15
    assert result_differences(spec, close) == []
    far = copy.deepcopy(spec.expected)
    far["vectors"][0][0] += 1e-6
    assert result_differences(spec, far) != []


def test_differences_name_missing_and_unexpected_fields() -> None:
    found = differences({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1], "c": True})
    assert sorted(found) == ["$.b: expected 2 items, got 1", "$.c: unexpected"]
    assert differences(True, 1) != []  # a bool is not the number 1


def _accepted(spec: JobSpec, *ids: str) -> Submission:
    return Submission(spec, accepted_ids=list(ids or [spec.job_id]), accepted_at=0.0)


def _completed(spec: JobSpec, result: Any = None, **fields: Any) -> Observation:
    job = {"id": spec.job_id, "status": "COMPLETED"}
    return Observation(200, job, spec.expected if result is None else result, **fields)


def test_verdict_counts_one_failure_of_each_kind() -> None:
    specs = plan_jobs(8, 11, "v")
    wrong_result = copy.deepcopy(specs[3].expected)
    wrong_result["rows" if "rows" in wrong_result else "processed_vectors"] = 0
    submissions = [
        _accepted(specs[0]),  # exact
        _accepted(specs[1]),  # lost: 404 at the end
        _accepted(specs[2]),  # stranded: PENDING
        _accepted(specs[3]),  # wrong result
        _accepted(specs[4], specs[4].job_id, "0" * 32),  # two jobs for one key
        _accepted(specs[5]),  # FAILED
        Submission(specs[6], gave_up="gave up after 180 s, last submit: 503"),  # never accepted
        _accepted(specs[7]),  # listed twice
    ]
    observations = {
        specs[0].job_id: _completed(specs[0]),
        specs[1].job_id: Observation(404, None, job_rows=0),
        specs[2].job_id: Observation(202, {"status": "PENDING"}),
        specs[3].job_id: _completed(specs[3], wrong_result),
        specs[4].job_id: _completed(specs[4]),
        specs[5].job_id: Observation(200, {"status": "FAILED", "error": {"type": "plan_missing"}}),
        specs[7].job_id: _completed(specs[7], listed=2),
    }
    verdict = judge(submissions, observations)
    assert (verdict.submitted, verdict.accepted, verdict.completed) == (8, 7, 3)
    assert (verdict.lost, verdict.stranded, verdict.wrong, verdict.unaccepted) == (1, 1, 2, 1)
    assert verdict.duplicated == 2
    assert verdict.failures == 7
    assert "plan_missing" in " ".join(verdict.examples["wrong"])


def test_a_job_with_no_observation_or_no_row_is_lost() -> None:
    specs = plan_jobs(2, 3, "l")
    observations = {specs[1].job_id: _completed(specs[1], job_rows=0)}
    verdict = judge([_accepted(specs[0]), _accepted(specs[1])], observations)
    assert verdict.lost == 2


def test_an_unkeyed_submission_is_judged_by_the_id_it_was_given() -> None:
    spec = simulate_job("unkeyed", random.Random(1), chunks=1)
    submission = Submission(spec, accepted_ids=["a" * 32], accepted_at=0.0, keyed=False)
    verdict = judge([submission], {"a" * 32: Observation(200, {"status": "COMPLETED"}, spec.expected)})
    assert (verdict.completed, verdict.duplicated, verdict.lost) == (1, 0, 0)


def test_outage_answers_must_be_503_with_retry_after_within_the_limit() -> None:
    good = Probe("GET /api/jobs", 503, 0.4, True)
    assert judge_outage([good, good]).met
    for bad in (
        Probe("GET /api/jobs", 500, 0.4, False),
        Probe("GET /api/jobs", 503, 2.5, True),
        Probe("GET /api/jobs", 503, 0.4, False),
        Probe("POST /api/jobs", None, 30.0, False),
    ):
        verdict = judge_outage([good, bad])
        assert not verdict.met and verdict.misses == 1
    assert not judge_outage([]).met  # no probe is no evidence


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 0.5) in (50.0, 51.0)
    assert percentile(samples, 0.99) == 99.0
    assert percentile([], 0.5) == 0.0


# --- leftovers after retention ------------------------------------------------------------------------


def test_the_admission_ledger_is_standing_state_unless_it_still_counts_jobs() -> None:
    ledger = {"PartitionKey": "admission-hub", "RowKey": "ledger", "running": 0, "pending": "{}",
              "joined": '{"normal": 1080}', "left": '{"normal": 1080}', "clients": "{}", "credit": "{}"}  # fmt: skip
    assert leftover_row(ledger) is None  # what the 2026-12-02 run left, and rightly
    assert leftover_row({**ledger, "running": 1}) == "admission ledger counting jobs"
    assert leftover_row({**ledger, "pending": '{"low": 2}'}) == "admission ledger counting jobs"
    queue_row = {"PartitionKey": "admission-hub", "RowKey": "q_normal_1_abc"}
    assert leftover_row(queue_row) == "admission queue rows"
    assert leftover_row({"PartitionKey": "abc", "RowKey": "job", "status": "COMPLETED"}) == "Jobs job rows (COMPLETED)"
    assert leftover_row({"PartitionKey": "index", "RowKey": "1_abc"}) == "Jobs index rows (-)"
