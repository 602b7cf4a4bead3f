"""Monitoring in one process: metrics addresses, the probes' answers, the metrics built
from job events and queue readings, and the log's JSON lines."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from djctl.config import ConfigError, load_settings
from djctl.daemon.exporter import AddressError, parse_address
from djctl.daemon.health import Answer, DatabaseProbe, LoopState, healthz, liveness, readyz
from djctl.daemon.logs import LogFilter, LogLine, LogWriter, records, tail
from djctl.daemon.metrics import Metrics, QueueCollector, QueueSample
from djctl.daemon.model import ProcessInfo, State

T0 = datetime(2026, 11, 22, 10, 4, 5, 123456, tzinfo=timezone.utc)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# -- addresses -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, host, port", [
    ("127.0.0.1:9187", "127.0.0.1", 9187),
    ("[::1]:9187", "::1", 9187),
    ("localhost:9187", "localhost", 9187),
    (":9187", "127.0.0.1", 9187),
])
def test_loopback_addresses_are_taken(text, host, port):
    address = parse_address(text)
    assert (address.host, address.port) == (host, port)


@pytest.mark.parametrize("text", ["", "9187", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                                  "127.0.0.1:http", "[::1]9187", "http://127.0.0.1:9187"])
def test_bad_addresses_are_one_line(text):
    with pytest.raises(AddressError) as e:
        parse_address(text)
    assert str(e.value).startswith(f"bad metrics address {text!r}; use HOST:PORT, e.g. 127.0.0.1:9187")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["0.0.0.0:9187", "192.0.2.7:9187", "[::]:9187"])
def test_an_address_beyond_loopback_needs_the_setting(text):
    with pytest.raises(AddressError, match="is not a loopback address; .*metrics_remote = true"):
        parse_address(text)
    assert parse_address(text, remote=True).port == 9187


def test_log_format_is_text_or_json(tmp_path):
    assert load_settings(env={"DJ_LOG_FORMAT": "json"}, cwd=tmp_path).log_format == "json"
    assert load_settings(env={"DJ_METRICS": "127.0.0.1:9187"}, cwd=tmp_path).metrics == "127.0.0.1:9187"
    with pytest.raises(ConfigError, match=r"^log_format must be text or json \(got 'xml'\); set DJ_LOG_FORMAT"):
        load_settings(env={"DJ_LOG_FORMAT": "xml"}, cwd=tmp_path)


# -- probes --------------------------------------------------------------------------------

def proc(name: str, state: State, pid: int | None = 10) -> ProcessInfo:
    return ProcessInfo(name, name.split(".")[0], pid, state, T0, "djctl work")


UP = LoopState(100.0, (proc("worker.1", State.UP), proc("worker.2", State.UP)), {"worker": 2, "mail": 0}, True)
DB_OK = Answer(200, "the database answers")


def test_healthz_is_the_loop_turning():
    assert healthz(None, 100.0) == Answer(503, "the supervisor is starting")
    assert healthz(UP, 104.0).ok
    assert healthz(UP, 106.5) == Answer(503, "the supervisor's loop has not turned for 6.5s")


def test_readyz_wants_the_formation_up_and_the_database_answering():
    assert readyz(UP, 100.5, DB_OK) == Answer(200, "ok: 2 of 2 processes up; the database answers")
    crashed = LoopState(100.0, (proc("worker.1", State.UP), proc("worker.2", State.CRASHED, None)),
                        {"worker": 2}, True)
    assert readyz(crashed, 100.0, DB_OK) == Answer(
        503, "the formation is not up: 1 of 2 processes up (worker.2 crashed)")
    assert readyz(LoopState(100.0, UP.processes, UP.formation, steady=False), 100.0, DB_OK).status == 503
    assert readyz(LoopState(100.0, UP.processes, UP.formation, True, stopping=True), 100.0, DB_OK) == Answer(
        503, "the supervisor is stopping")
    gone = Answer(503, "the database has not answered for 1.6s (connection refused)")
    assert readyz(UP, 100.0, gone) == gone
    assert readyz(UP, 200.0, DB_OK).reason.startswith("the supervisor's loop has not turned")


def test_liveness_of_a_process_or_a_type():
    state = LoopState(100.0, (proc("worker.1", State.UP), proc("worker.2", State.STARTING)), {"worker": 2, "mail": 0})
    assert liveness(state, 100.0, "worker.1") == Answer(200, "worker.1 up (pid 10)")
    assert liveness(state, 100.0, "worker.2") == Answer(503, "worker.2 starting")
    assert liveness(state, 100.0, "worker") == Answer(503, "worker.2 starting")
    assert liveness(state, 100.0, "mail") == Answer(503, "mail is scaled to 0")
    assert liveness(state, 100.0, "web") == Answer(404, "no process or type 'web' here")


def test_the_database_probe_answers_from_its_last_ping_without_waiting():
    now = [50.0]
    probe = DatabaseProbe(lambda: None, interval=0.5, stale=1.5, clock=lambda: now[0])
    assert probe.answering() == Answer(503, "the database has not answered yet")
    probe._ping_once(threading.Event())
    assert probe.answering().ok and probe.round_trip == 0.0
    now[0] = 51.6
    probe.error = "no answer within 1.5s"
    assert probe.answering() == Answer(503, "the database has not answered for 1.6s (no answer within 1.5s)")

    def refused() -> None:
        raise ConnectionRefusedError("connection refused")

    failing = DatabaseProbe(refused, clock=lambda: now[0])
    failing._ping_once(threading.Event())
    assert failing.answering() == Answer(503, "the database has not answered yet (connection refused)")


# -- metrics ---------------------------------------------------------------------------------

def event(kind: str, **extra) -> str:
    data = {"event": kind, "job_id": 7, "class": "Mailer", "queue": "mail", "attempts": 1, "run_time": 0.2,
            "waited": 0.03, "ts": T0.isoformat(), **extra}
    return json.dumps(data)


def test_job_events_count_by_class_and_queue_and_fill_the_histograms():
    m = Metrics("railgun")
    for raw in (event("completed"), event("completed"), event("failed", queue=None),
                event("failed_permanently", run_time=None, waited=None), "not json", '{"event": "forged"}',
                event("completed", run_time="slow", waited=-1)):
        m.job_event(raw, "default")
    got = samples(m)
    host = ("host", "railgun")
    assert got[("djctl_jobs_completed_total", (host, ("job_class", "Mailer"), ("queue", "mail")))] == 3
    assert got[("djctl_jobs_failed_total", (host, ("job_class", "Mailer"), ("permanent", "false"),
                                            ("queue", "default")))] == 1
    assert got[("djctl_jobs_failed_total", (host, ("job_class", "Mailer"), ("permanent", "true"),
                                            ("queue", "mail")))] == 1
    assert got[("djctl_job_run_seconds_count", (host, ("job_class", "Mailer"), ("queue", "mail")))] == 2
    assert got[("djctl_job_run_seconds_bucket", (host, ("job_class", "Mailer"), ("le", "0.25"),
                                                 ("queue", "mail")))] == 2
    assert got[("djctl_job_wait_seconds_count", (host, ("queue", "mail")))] == 2
    m.restarted("worker")
    assert samples(m)[("djctl_process_restarts_total", (host, ("type", "worker")))] == 1


def test_a_scrape_reads_the_queue_and_says_when_it_could_not():
    m = Metrics("railgun")
    outcome: list = [QueueSample({("mail", 0, "ready"): 3, ("mail", 0, "failed"): 1}, {"mail": 12.5}, 0.004)]

    def read() -> QueueSample:
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        if isinstance(outcome[0], threading.Event):
            outcome[0].wait(5)
            raise TimeoutError("late")
        return outcome[0]

    collector = QueueCollector(read, timeout=0.2)
    m.add(collector)
    got = samples(m)
    assert got[("djctl_queue_up", ())] == 1
    assert got[("djctl_jobs", (("priority", "0"), ("queue", "mail"), ("state", "ready")))] == 3
    assert got[("djctl_queue_latency_seconds", (("queue", "mail"),))] == 12.5

    outcome[0] = OSError("connection refused")
    got = samples(m)
    assert got[("djctl_queue_up", ())] == 0
    assert got[("djctl_jobs", (("priority", "0"), ("queue", "mail"), ("state", "ready")))] == 3  # the last reading

    gate = outcome[0] = threading.Event()
    assert samples(m)[("djctl_queue_up", ())] == 0  # a reading that does not come back in time
    gate.set()
    m.close()


# -- JSON lines ------------------------------------------------------------------------------

def test_a_log_line_reads_as_either_format():
    text = "2026-11-22T10:04:05.123456+00:00 app[worker.1]: *** Starting job worker host:railgun pid:25794"
    as_json = records.render(text, "json")
    assert json.loads(as_json) == {"ts": "2026-11-22T10:04:05.123456+00:00", "source": "app", "process": "worker.1",
                                   "level": "info", "message": "*** Starting job worker host:railgun pid:25794"}
    assert records.render(as_json, "text") == text
    assert records.render(text, "text") == text
    assert records.render("{not json", "json") is None
    assert records.render('{"ts": "yesterday", "source": "app", "process": "w", "message": ""}', "json") is None


def test_a_job_event_becomes_a_record_with_the_jobs_fields_and_no_text_line():
    raw = json.loads(event("failed_permanently", attempts=25, host="railgun", process="worker.1"))
    record = records.job_record(raw, "worker.1", T0)
    data = json.loads(record.to_json())
    assert data == {"ts": "2026-11-22T10:04:05.123456+00:00", "source": "app", "process": "worker.1",
                    "level": "error", "message": "Job Mailer (id=7) failed permanently after 0.2000s",
                    "job_id": 7, "class": "Mailer", "queue": "mail", "outcome": "failed_permanently",
                    "run_time": 0.2, "waited": 0.03, "attempts": 25, "host": "railgun"}
    assert records.parse(record.to_json()) == record
    assert records.render(record.to_json(), "text") is None  # the worker's own line says it in text


def test_a_json_log_is_written_and_read_back_in_either_format(tmp_path):
    path = tmp_path / "djctl.log"
    with LogWriter(path, clock=lambda: T0, fmt="json") as log:
        log.write("app", "worker.1", "one\ntwo")
        log.write("djctl", "worker.1", "State changed from starting to up")
        log.append(records.job_record(json.loads(event("completed")), "worker.1", T0).to_json())
    stored = path.read_text().splitlines()
    assert [json.loads(line)["message"] for line in stored] == [
        "one", "two", "State changed from starting to up", "Job Mailer (id=7) completed after 0.2000s"]
    assert tail(path, 10, LogFilter(source="djctl"), "text") == [
        LogLine(T0, "djctl", "worker.1", "State changed from starting to up").render()]
    assert len(tail(path, 10, LogFilter(proc="worker"), "text")) == 3
    assert [json.loads(line).get("outcome") for line in tail(path, 10, LogFilter(proc="worker.1"), "json")] == [
        None, None, None, "completed"]
    assert tail(path, 10, LogFilter()) == stored


def test_a_reading_serves_the_scrapes_of_the_next_reuse_seconds():
    now = [0.0]
    reads = []

    def read() -> QueueSample:
        reads.append(now[0])
        return QueueSample({("mail", 0, "ready"): len(reads)}, {"mail": 0.0}, 0.001)

    collector = QueueCollector(read, timeout=5, reuse=10.0, clock=lambda: now[0])
    for at in (0.0, 3.0, 9.9, 10.0, 15.0, 20.5):
        now[0] = at
        sample, error = collector.sample()
        assert error is None
    assert reads == [0.0, 10.0, 20.5]
    assert sample.jobs[("mail", 0, "ready")] == 3
    collector.close()
