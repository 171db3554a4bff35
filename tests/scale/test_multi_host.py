"""The stack as separate hosts: `infra` (Redis, PostgreSQL, the S3 server), `api`, and two workers `w1`
and `w2`, each in a network namespace of its own (tests/scale/hosts.py), reaching each other only by
address; each host has its own data, scratch and model folders (the models copied per host).

Twelve edits and previews are submitted from the test (the client, in the root namespace). Mid-load,
w1's link is cut while it runs a job, the API is killed and started again, w1 comes back, and then every
process of w1 is killed while it runs another job. Every job must end once, succeeded, with its
output written to S3 once, and the two jobs w1 lost must finish on w2 (the S3 server's request log
names the host that wrote each object).

Figures printed: jobs, lost, run twice, seconds from the cut and from the kill until w2 runs the job.
The lease is 3 s here (`CMET_JOB_LEASE_S`, default 10): take-over waits for it to lapse, see
docs/architecture.md "Jobs across hosts".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cmet_core.media.sample import write_sample_clip
from cmet_jobs.db.models import JobRow
from cmet_jobs.db.session import session_scope
from cmet_jobs.keys import create_key
from tests.scale.hosts import Host, network, why_not_permitted
from tests.service.servers import private_postgres, private_redis
from tests.service.stack import moto_s3, moto_storage, wait_until
from worker.devices import celery_worker, job_queues
from worker.scratch import PREFIX

pytestmark = pytest.mark.scale

LEASE_S = 3.0
API_PORT = 8000
BUCKET = "cmet-scale"
FINAL = {"succeeded", "failed", "canceled"}


@dataclass
class Cluster:
    hosts: dict[str, Host]
    env: dict[str, dict[str, str]]
    folders: dict[str, Path]
    db_url: str
    s3_log: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{self.hosts['api'].address}:{API_PORT}"

    def _spawn(self, role: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folders[role] / f"{role}.log").open("ab")
        proc = subprocess.Popen([*self.hosts[role].wrap, *args], env=self.env[role], stdout=log, stderr=log)
        self.procs[role] = proc
        return proc

    def start_api(self) -> None:
        args = [sys.executable, "-m", "uvicorn", "service.app:app", "--host", self.hosts["api"].address]
        proc = self._spawn("api", [*args, "--port", str(API_PORT), "--log-level", "warning"])
        wait_until(lambda: httpx.get(self.api_url + "/healthz").status_code == 200, 120, "the API host", proc)

    def start_worker(self, role: str) -> None:
        """An edit worker as `cmet worker` builds one (one job at a time, prefork, previews first)."""

        env = self.env[role]
        queues = job_queues(env["CMET_QUEUE"], env["CMET_PREVIEW_QUEUE"])
        args = celery_worker(queues, 1, "prefork", f"cmet-{role}")
        self._spawn(role, [*args, "--without-gossip", "--without-mingle", "--without-heartbeat"])

    def worker_ready(self, role: str) -> bool:
        return "ready." in (self.folders[role] / f"{role}.log").read_text(errors="replace")

    def running_here(self, role: str) -> list[str]:
        """Ids of the jobs whose scratch folder is on this host now (worker.scratch names them)."""

        scratch = self.folders[role] / "data" / "scratch"
        names = [p.name for p in scratch.glob(f"{PREFIX}*")] if scratch.is_dir() else []
        return [n[len(PREFIX) :].rsplit("-", 1)[0] for n in names if not n.endswith(".lock")]

    def writes(self) -> list[tuple[str, str]]:
        """(client address, key) of every object PUT to the bucket, from the S3 server's request log."""
        found = re.findall(rf'^(\S+) .*"PUT /{BUCKET}/(\S+) HTTP', self.s3_log.read_text(errors="replace"), re.M)
        return [(address, key) for address, key in found]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_set: Path) -> Iterator[Cluster]:
    reason = why_not_permitted()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("scale")
    started = time.monotonic()
    with network(["infra", "api", "w1", "w2"]) as hosts, ExitStack() as running:
        infra, s3_log = hosts["infra"], tmp / "s3.log"
        servers = [ExitStack() for _ in range(3)]
        for server in servers:
            running.push(server)
        with ThreadPoolExecutor(3) as starting:  # side by side: PostgreSQL's initdb takes the longest
            redis_up = starting.submit(
                servers[0].enter_context, private_redis(tmp / "redis", infra.address, infra.wrap)
            )
            database_up = starting.submit(servers[1].enter_context, private_postgres(infra.address, infra.wrap))
            s3_up = starting.submit(servers[2].enter_context, moto_s3(s3_log, infra.address, infra.wrap))
        redis, database, s3 = redis_up.result(), database_up.result(), s3_up.result()
        shared = {k: v for k, v in os.environ.items() if not k.startswith("CMET_")} | {
            "CMET_DATABASE_URL": database.url,
            "CMET_BROKER_URL": redis.url,
            **moto_storage(s3, BUCKET),
            "CMET_QUEUE": "cmet-scale",
            "CMET_PREVIEW_QUEUE": "cmet-scale-previews",
            "CMET_WEBHOOK_QUEUE": "cmet-scale-webhooks",
            "CMET_PUBLIC_URL": f"http://{hosts['api'].address}:{API_PORT}",
            "CMET_NUM_THREADS": "1",
            "CMET_WORKER_METRICS_PORT": "0",
            "CMET_JOB_LEASE_S": str(LEASE_S),
            "CMET_PREVIEWS_PER_KEY": "20",
        }
        folders, env = {}, {}
        for role in ("api", "w1", "w2"):
            folders[role] = tmp / role
            folders[role].mkdir()
            env[role] = shared | {"CMET_DATA_DIR": str(folders[role] / "data")}
            if role != "api":  # each worker host has its own copy of the models
                shutil.copytree(tiny_set, folders[role] / "models")
                env[role]["CMET_MODELS_SET"] = str(folders[role] / "models")
        cluster = Cluster(hosts, env, folders, database.url, s3_log)
        infra_up = time.monotonic() - started
        try:
            for role in ("w1", "w2"):  # their sweepers retry until the API has made the tables
                cluster.start_worker(role)
            cluster.start_api()  # it migrates the database
            for role in ("w1", "w2"):
                wait_until(lambda role=role: cluster.worker_ready(role), 120, f"the worker on {role}")
            print(f"\nhosts and infra up in {infra_up:.1f} s, the API and workers {time.monotonic() - started:.1f} s")
            yield cluster
        finally:
            for role, proc in cluster.procs.items():
                hosts[role].kill_all()
                proc.wait(10)


def _until(check: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until `check()` is true."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not after {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_jobs_cross_hosts_and_survive_losing_a_worker(cluster: Cluster, tmp_path: Path) -> None:

    with session_scope(cluster.db_url) as session:
        secret = create_key(session, "scale", max_concurrent_jobs=100, max_submissions_per_minute=1000).secret
    client = httpx.Client(base_url=cluster.api_url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    clip = write_sample_clip(tmp_path / "clip.mp4", seconds=0.4).read_bytes()

    def submit(n: int) -> list[str]:
        """n jobs: edits, clip previews and contact sheets in turn."""
        ids = []
        for i in range(n):
            kind = (len(submitted) + i) % 3
            if kind == 2:
                data = {"emotions": ["happy", "sad"], "intensities": ["1"]}
                r = client.post("/v1/previews", files={"video": ("s.mp4", clip, "video/mp4")}, data=data)
            else:
                data = {"emotion": "happy"} | ({"preview_s": "0.2"} if kind == 1 else {})
                r = client.post("/v1/edits", files={"video": ("s.mp4", clip, "video/mp4")}, data=data)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        return ids

    def record(job_id: str) -> tuple[str, int]:
        with session_scope(cluster.db_url) as session:
            job = session.get(JobRow, job_id)
            assert job is not None
            return job.state.value, job.attempts

    def busy_on(role: str, besides: str = "") -> tuple[str, int] | None:
        """A job this host runs now, and its attempt."""
        for job_id in set(cluster.running_here(role)) - {besides}:
            state, attempt = record(job_id)
            if state == "running":
                return job_id, attempt
        return None

    def take_over(job_id: str, attempt: int, since: float) -> tuple[float, float]:
        """Seconds from `since` until the job was put back (its lease lapsed, a sweeper re-queued it) and
        until w2 ran it."""
        _until(lambda: record(job_id) != ("running", attempt), 60, f"{job_id} put back")
        back = time.monotonic()
        _until(lambda: job_id in cluster.running_here("w2") or record(job_id)[0] in FINAL, 60, f"w2 taking {job_id}")
        return back - since, time.monotonic() - since

    started = time.monotonic()
    marks: list[str] = []

    def mark(what: str) -> None:
        marks.append(f"{time.monotonic() - started:.1f} s {what}")

    submitted: list[str] = []
    for _ in range(2):  # both workers are idle: each takes one
        r = client.post("/v1/edits", files={"video": ("l.mp4", clip, "video/mp4")}, data={"emotion": "sad"})
        assert r.status_code == 202, r.text
        submitted.append(r.json()["id"])
    mark("2 submitted")

    def lose_w1(how: Callable[[Host], object], besides: str = "") -> tuple[str, float, float]:
        """Once w1 runs a job (not `besides`), do `how` to w1: (that job, seconds until it was put back,
        seconds until w2 ran it)."""
        _until(lambda: busy_on("w1", besides), 60, "w1 running a job")
        job_id, attempt = busy_on("w1", besides) or ("", 0)
        how(cluster.hosts["w1"])
        mark(f"w1 {how.__name__}")
        back, taken = take_over(job_id, attempt, time.monotonic())
        mark("w2 took w1's job")
        return job_id, back, taken

    # w1's link cut mid-job: its lease lapses, a sweeper puts the job back, w2 takes it
    cut_job, cut_back, cut_taken = lose_w1(Host.cut)
    cluster.hosts["w1"].reconnect()
    submitted += submit(8)
    mark("10 submitted, w1 back")

    def restart_api() -> None:
        cluster.hosts["api"].kill_all()
        cluster.procs["api"].wait(10)
        cluster.start_api()
        mark("API restarted")

    # every process of w1 killed mid-job, the same way (not the job it lost: its stale run stops at its
    # next beat, when it sees the job is w2's); meanwhile the API is killed and started again with jobs in
    # flight: what it accepted stays, submissions go on
    with ThreadPoolExecutor(1) as background:
        api_back = background.submit(restart_api)
        killed_job, kill_back, kill_taken = lose_w1(Host.kill_all, besides=cut_job)
        api_back.result()
    submitted += submit(2)
    mark("12 submitted")

    finals = {}
    for job_id in submitted:
        path = "/v1/previews" if job_id.startswith("sht_") else "/v1/edits"
        _until(lambda job_id=job_id, path=path: client.get(f"{path}/{job_id}").json()["state"] in FINAL, 120, job_id)
        finals[job_id] = client.get(f"{path}/{job_id}").json()
    with session_scope(cluster.db_url) as session:
        outputs = {job.id: job.output_key for job in session.query(JobRow)}
    writes = cluster.writes()
    written = {job_id: [address for address, key in writes if key == outputs[job_id]] for job_id in submitted}
    lost = [job_id for job_id, job in finals.items() if job["state"] != "succeeded"]
    twice = [job_id for job_id, hosts in written.items() if len(hosts) > 1]
    mark("all final")
    print(
        f"\nmulti-host: {len(submitted)} jobs on 2 worker hosts, {len(lost)} lost, {len(twice)} run twice; "
        f"w1's job back in the queue {cut_back:.1f} s after its link was cut, run by w2 after {cut_taken:.1f} s; "
        f"{kill_back:.1f} s and {kill_taken:.1f} s after its processes were killed (lease {LEASE_S:.0f} s); "
        f"the API restarted mid-load\n  " + "; ".join(marks)
    )
    assert len(submitted) == 12 and set(outputs) == set(submitted)
    assert not lost and not twice, (lost, twice)
    assert all(len(hosts) == 1 for hosts in written.values()), written
    w2 = cluster.hosts["w2"].address
    assert written[cut_job] == [w2] and written[killed_job] == [w2], written
