"""The job runtime: what outlives a request (owner, state, progress, time to live, outputs
in a spool any worker can serve)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from genofed import JobRuntime, NotFoundError, QueryError
from genofed.jobs.runtime import Job, JobRecord, JobState


def wait_until_finished(runtime: JobRuntime, job: Job, owner: str = "alice") -> JobRecord:
    """The job's record once finished (each body here ends by itself)."""
    done = threading.Event()
    while not done.wait(0.01):
        record = runtime.record(job.id, owner)
        if record.state.finished:
            return record
    raise AssertionError("unreachable")


@pytest.fixture
def runtime(tmp_path: Path):
    now = [1000.0]
    jobs = JobRuntime(tmp_path / "jobs", ttl_s=60, clock=lambda: now[0])
    jobs.now = now  # type: ignore[attr-defined]
    yield jobs
    jobs.close()


def test_a_job_runs_reports_progress_and_keeps_its_outputs(runtime: JobRuntime) -> None:
    def body(job: Job) -> None:
        job.update(progress=0.5, message="half way")
        job.publish("result.json", b'{"beta": 0.25}')
        job.update(result={"rows": 10})

    job = runtime.submit("analysis", "alice", body)
    record = wait_until_finished(runtime, job)
    assert record.state == JobState.SUCCEEDED
    assert (record.progress, record.message, record.result) == (0.5, "half way", {"rows": 10})
    assert runtime.output(job.id, "result.json") == b'{"beta": 0.25}'
    assert runtime.outputs(job.id) == ["job.json", "result.json"]


def test_another_worker_reads_a_persisted_job_from_the_spool(runtime: JobRuntime) -> None:
    job = runtime.submit("analysis", "alice", lambda job: job.publish("out", b"42"))
    wait_until_finished(runtime, job)
    other_worker = JobRuntime(runtime.root, ttl_s=60)
    try:
        record = other_worker.record(job.id, "alice")
        assert record.state == JobState.SUCCEEDED and record.kind == "analysis"
        assert other_worker.output(job.id, "out", consume=True) == b"42"
        assert other_worker.output(job.id, "out") is None  # consumed: read once
    finally:
        other_worker.close()


def test_a_job_is_its_owners_only(runtime: JobRuntime) -> None:
    job = runtime.submit("analysis", "alice", lambda job: None)
    wait_until_finished(runtime, job)
    with pytest.raises(NotFoundError, match="no job"):
        runtime.record(job.id, "mallory")
    with pytest.raises(NotFoundError):
        runtime.record("../../etc", "alice")
    assert runtime.output("../../etc", "passwd") is None


def test_a_failing_body_fails_the_job_with_its_message(runtime: JobRuntime) -> None:
    def refuses(job: Job) -> None:
        raise QueryError("variable 'bmi' is not numeric")

    def crashes(job: Job) -> None:
        raise RuntimeError("secret detail")

    refused = wait_until_finished(runtime, runtime.submit("analysis", "alice", refuses))
    assert refused.state == JobState.FAILED
    assert refused.error == {
        "status": 400,
        "title": "QueryError",
        "detail": "variable 'bmi' is not numeric",
    }
    crashed = wait_until_finished(runtime, runtime.submit("analysis", "alice", crashes))
    assert crashed.error is not None and crashed.error["status"] == 500
    assert "secret detail" not in crashed.error["detail"]  # what leaks is the type only


def test_a_job_in_memory_is_persisted_only_when_asked(runtime: JobRuntime) -> None:
    started = threading.Event()
    release = threading.Event()

    def body(job: Job) -> None:
        started.set()
        release.wait(10)

    job = runtime.submit("data-connect", "alice", body, persist=False)
    assert started.wait(10)
    assert not (runtime.root / job.id).exists()  # nothing on disk
    assert runtime.record(job.id, "alice").state == JobState.RUNNING  # this worker knows
    job.persist()
    assert (runtime.root / job.id / "job.json").exists()
    release.set()
    assert wait_until_finished(runtime, job).state == JobState.SUCCEEDED


def test_a_job_can_be_cancelled_by_its_owner(runtime: JobRuntime) -> None:
    started = threading.Event()

    def body(job: Job) -> None:
        started.set()
        while not job.cancelled:
            threading.Event().wait(0.005)

    job = runtime.submit("analysis", "alice", body)
    assert started.wait(10)
    with pytest.raises(NotFoundError):
        runtime.cancel(job.id, "mallory")
    runtime.cancel(job.id, "alice")
    assert wait_until_finished(runtime, job).state == JobState.CANCELLED


def test_jobs_past_their_time_to_live_are_deleted(runtime: JobRuntime) -> None:
    job = runtime.submit("analysis", "alice", lambda job: job.publish("out", b"1"), ttl_s=10)
    wait_until_finished(runtime, job)
    runtime.now[0] += 120  # type: ignore[attr-defined]  # past its time, and the minute's look
    runtime.clean_up()
    with pytest.raises(NotFoundError):
        runtime.record(job.id, "alice")


def test_a_kind_of_job_runs_on_its_own_executor(runtime: JobRuntime) -> None:
    names: list[str] = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis-pool")
    runtime.run_kind_on("analysis", pool)
    job = runtime.submit(
        "analysis", "alice", lambda job: names.append(threading.current_thread().name)
    )
    wait_until_finished(runtime, job)
    assert names[0].startswith("analysis-pool")


def test_output_names_cannot_escape_the_job(runtime: JobRuntime) -> None:
    job = runtime.submit("analysis", "alice", lambda job: None)
    wait_until_finished(runtime, job)
    for name in ("../x", "job.json", ".hidden", ""):
        with pytest.raises(ValueError, match="not an output name"):
            runtime.output(job.id, name)


def test_a_job_being_read_is_kept_past_its_time_to_live(runtime: JobRuntime) -> None:
    def body(job: Job) -> None:
        for k in range(3):
            job.publish(f"page-{k}", b"[]")

    job = runtime.submit("data-connect", "alice", body, ttl_s=100)
    wait_until_finished(runtime, job)
    runtime.now[0] += 90  # type: ignore[attr-defined]
    assert runtime.output(job.id, "page-0", consume=True) == b"[]"  # a reader is there
    runtime.now[0] += 90  # type: ignore[attr-defined]  # 180 s after it ran, 90 after the read
    runtime.clean_up()
    assert runtime.output(job.id, "page-1", consume=True) == b"[]"
    runtime.now[0] += 200  # type: ignore[attr-defined]  # then left alone
    runtime.clean_up()
    with pytest.raises(NotFoundError):
        runtime.record(job.id, "alice")
