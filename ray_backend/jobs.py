"""Runs as Ray jobs: submit, follow, stop and list them through a cluster's dashboard (Jobs API).

The run's driver (``synapse-steps run ... --json``) runs on the cluster's head node, so it
does not depend on the submitter staying connected. This side needs plain ``ray`` and
aiohttp (Ray's job client refuses to start without it); the cluster needs ``ray[default]``
(its dashboard serves the Jobs API).

Ray's ``JobSubmissionClient`` sends its HTTP requests without a timeout, so an address
that does not answer would hang it: ``connect`` first opens a plain socket (a few
seconds), then asks ``/api/version`` with a timeout, and turns each way of failing into
one line that names the address. Authentication is Ray's: with ``RAY_AUTH_MODE=token``
the client sends the token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``) as a bearer header on every request.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp  # noqa: F401 - Ray's job client refuses to start without it: fail at import, by name
import requests
from packaging.version import InvalidVersion, Version
from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled
from ray.exceptions import AuthenticationError
from ray.job_submission import JobStatus, JobSubmissionClient

from synapse_steps.errors import StepsError

CONNECT_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 10.0
GCS_PORT = 6379
MIN_RAY = "2.60"
METADATA_KEY = "synapse_steps_target"  # in the job's metadata: marks our runs, names the target
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
AUTH_HINT = (
    "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)"
)


class JobsError(StepsError):
    """The cluster cannot be reached, refuses us, or does not know the run: nothing was done."""


@dataclass(frozen=True)
class JobRow:
    """One run as the cluster lists it; times are milliseconds since the epoch (or None)."""

    run_id: str
    status: str
    target: str
    entrypoint: str
    start_time: int | None
    end_time: int | None
    message: str | None


def dashboard_url(address: str) -> str:
    """``http://HOST:PORT`` from ``http(s)://HOST:PORT`` or ``HOST:PORT``; anything else is an error."""
    url = address if "://" in address else f"http://{address}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise JobsError(
            f"--address {address!r}: expected the dashboard's http://HOST:PORT (port 8265 unless changed)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _reachable(url: str, timeout_s: float) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise JobsError(f"{url} did not answer within {timeout_s:g}s ({exc}); is the cluster running?") from None


def _not_dashboard(url: str, why: str, grpc: bool = False) -> JobsError:
    """``grpc``: the port speaks no HTTP/1.1, as Ray's GCS port (gRPC, 6379 by default) does."""
    gcs = " — it looks like Ray's GCS port" if grpc or urlsplit(url).port == GCS_PORT else ""
    return JobsError(
        f"{url} answers but is not a Ray dashboard ({why}){gcs}; the Jobs API is on the dashboard port "
        "(8265 unless changed), e.g. http://HEAD:8265"
    )


def _check_dashboard(url: str, timeout_s: float) -> None:
    """``GET /api/version`` with a timeout: a dashboard, a GCS port, or a refusal for want of a token."""
    try:
        headers = get_auth_headers_if_auth_enabled({})
    except AuthenticationError as exc:  # RAY_AUTH_MODE=token, but no token where Ray looks
        raise JobsError(f"no auth token for {url} (RAY_AUTH_MODE=token): {str(exc).split('. ')[0]}") from None
    try:
        reply = requests.get(f"{url}/api/version", headers=headers, timeout=timeout_s)
    except requests.exceptions.Timeout:
        raise _not_dashboard(url, f"no HTTP reply within {timeout_s:g}s") from None
    except requests.exceptions.RequestException as exc:
        raise _not_dashboard(url, f"no HTTP/1.1 reply: {type(exc).__name__}", grpc=True) from None
    if reply.status_code in (401, 403):
        raise JobsError(f"{url} requires Ray's auth token ({reply.status_code} {reply.text.strip()}): {AUTH_HINT}")
    try:
        version = reply.json()["ray_version"]
        Version(str(version))
    except (ValueError, KeyError, TypeError, InvalidVersion):
        raise _not_dashboard(url, f"HTTP {reply.status_code} without a Ray version") from None
    if Version(str(version)) < Version(MIN_RAY):
        raise JobsError(f"{url} runs Ray {version}; synapse-steps needs Ray {MIN_RAY} or later on the cluster")


class ClusterJobs:
    """The Jobs API of one cluster, with errors that name the address and the run."""

    def __init__(self, address: str, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.url = dashboard_url(address)
        _reachable(self.url, connect_timeout_s)
        _check_dashboard(self.url, REQUEST_TIMEOUT_S)
        self._client = JobSubmissionClient(self.url)

    def submit(
        self,
        run_id: str,
        entrypoint: str,
        target: str,
        working_dir: str,
        excludes: list[str],
        env_vars: dict[str, str],
    ) -> None:
        """Submit the run as a Ray job whose submission id is ``run_id``, so ``attach``/``stop`` find it by that id."""
        runtime_env = {"working_dir": working_dir, "excludes": excludes, "env_vars": env_vars}
        # Ray logs each packaging decision at INFO; the size was checked before (job_package).
        for name in ("ray", "ray.dashboard.modules.dashboard_sdk"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._call(
            run_id,
            self._client.submit_job,
            entrypoint=entrypoint,
            submission_id=run_id,
            runtime_env=runtime_env,
            metadata={METADATA_KEY: target},
        )

    def status(self, run_id: str) -> tuple[JobStatus, str | None]:
        """The job's Ray status and its message (why it failed or was stopped); JobsError for an unknown run id."""
        info = self._call(run_id, self._client.get_job_info, run_id)
        return info.status, info.message

    def logs(self, run_id: str) -> str:
        """The job's whole log so far: the entrypoint's stdout and stderr, interleaved."""
        return str(self._call(run_id, self._client.get_job_logs, run_id))

    def stop(self, run_id: str) -> bool:
        """Ask Ray to stop the job (SIGTERM to the entrypoint); False if it had already ended."""
        return bool(self._call(run_id, self._client.stop_job, run_id))

    def runs(self) -> list[JobRow]:
        """The runs ``submit`` sent to this cluster (other jobs are left out), oldest first."""
        rows = []
        for job in self._call(None, self._client.list_jobs):
            metadata = job.metadata or {}
            if METADATA_KEY not in metadata or job.submission_id is None:
                continue
            rows.append(
                JobRow(
                    run_id=job.submission_id,
                    status=str(job.status.value),
                    target=metadata[METADATA_KEY],
                    entrypoint=job.entrypoint,
                    start_time=job.start_time,
                    end_time=job.end_time,
                    message=job.message,
                )
            )
        return sorted(rows, key=lambda row: row.start_time or 0)

    def _call(self, run_id: str | None, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise JobsError(f"{self.url}: {type(exc).__name__}: {exc}") from None
        except AuthenticationError as exc:
            raise JobsError(f"{self.url}: {str(exc).splitlines()[0]}: {AUTH_HINT}") from None
        except RuntimeError as exc:  # Ray's job client reports HTTP errors this way
            text = str(exc)
            if run_id is not None and "404" in text and "does not exist" in text:
                raise JobsError(
                    f"no run {run_id!r} on {self.url} (synapse-steps jobs --address {self.url} lists them)"
                ) from None
            if run_id is not None and "already exists" in text:
                raise JobsError(f"a job {run_id!r} already exists on {self.url}") from None
            raise JobsError(f"{self.url}: {text}") from None
