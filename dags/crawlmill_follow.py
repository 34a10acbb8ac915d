"""Following a Ray job from an Airflow task (crawlmill_ray.py's RayJobOperator): its log copied into
the task's log as the job writes it, and its end turned into the task's: SUCCEEDED returns, any other
end raises with the job's status message and its last log lines. Not a DAG itself; the DAGs in this
folder import it through crawlmill_ray.py, as Airflow puts this folder on sys.path.

Which failures a retry can fix: crawlmill's exit status 2 is bad input or config (an unknown key, a
missing input; README "Exit status"), which every new try meets again, so a job whose entrypoint
exited 2 raises RayJobBadInput, an AirflowFailException: the task fails at once, without the
retries (``CRAWLMILL_DAG_RETRIES`` of ``CRAWLMILL_DAG_RETRY_DELAY_S``, by default 2 of 300 s). Every
other failure is retried: exit status 1 (failed tasks, which a rerun retries; an object store that did
not answer), any other status, a
job STOPPED (killed), a job server that stays unreachable. The exit status is Ray's job info field
``driver_exit_code`` (Ray 2.60, pinned in constraints.txt: set when the entrypoint has exited, with
status FAILED and error_type JOB_ENTRYPOINT_COMMAND_ERROR for a non-zero one; None while it runs, or
when it never started or was stopped); from a job server whose info lacks it, the exit status is
read from Ray's status message, "Job entrypoint command failed with exit code N, ...".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
LOG_TAIL_LINES = 40
STREAM_RETRIES = 6  # reconnections in a row that bring no line before the task fails
BAD_INPUT_EXIT = 2  # crawlmill's exit status for bad input or config (crawlmill/cli_common.py user_errors)
_EXIT_IN_MESSAGE = re.compile(r"^Job entrypoint command failed with exit code (-?\d+)")


class RayJobFailed(AirflowException):
    """The Ray job ended FAILED or STOPPED; the message carries its status and last log lines."""


class RayJobBadInput(RayJobFailed, AirflowFailException):
    """The job's entrypoint exited with status 2 (bad input or config): the task fails without retries."""


class RayAuthFailed(AirflowFailException):
    """The Ray job server refused this Airflow worker's requests (its token authentication: no token
    sent, or the wrong one): the worker's environment must change, so the task fails without retries."""


AUTH_HELP = (
    "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH naming a file "
    "holding it) in the environment of the Airflow workers (docs/ray.md, token authentication)"
)


def is_auth_error(exc: BaseException) -> bool:
    """Whether `exc` is Ray's AuthenticationError (the job server answered 401 or 403)."""
    try:
        from ray.exceptions import AuthenticationError
    except ImportError:  # no Ray here: nothing of Ray's raised it
        return False
    return isinstance(exc, AuthenticationError)


def auth_failure(address: str, exc: BaseException) -> RayAuthFailed:
    """The one-line error for a job server that refused us: Ray's reason (its message's first line;
    the rest is generic advice for Ray's CLI) and what to set on the Airflow workers."""
    reason = (getattr(exc, "message", None) or str(exc)).strip().split("\n", 1)[0]
    return RayAuthFailed(f"the Ray job server at {address} refused this Airflow worker ({reason}): {AUTH_HELP}")


def exit_code(info: Any) -> int | None:
    """The exit status of the job's entrypoint, once it has exited; None before, or if it never ran."""
    code = getattr(info, "driver_exit_code", None)
    if code is None and (found := _EXIT_IN_MESSAGE.match(info.message or "")):
        code = int(found.group(1))
    return code


def _status(info: Any) -> str:
    return str(getattr(info.status, "value", info.status))


def _patiently(call: Callable[[], Any], log: Callable[[str], None], attempts: int = 6) -> Any:
    """`call()`, retried with backoff (1 + 2 + 4 + 8 + 16 s) while the job server is briefly unreachable.

    Failing the task on one lost poll would make the retry submit a second job beside the running one.
    """
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - requests' connection errors and the SDK's RuntimeError
            if attempt == attempts - 1 or "status code 404" in str(exc) or is_auth_error(exc):
                raise  # a refused token is no outage: waiting does not mend it
            log(f"Ray job server did not answer ({exc}); trying again")
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


class _LogCopy:
    """A job's log as it arrives: whole lines to `log` (the rest of a line waits for its end), the
    characters received counted (a new stream skips them), the last lines kept for an error."""

    def __init__(self, log: Callable[[str], None], tail_lines: int) -> None:
        self.log = log
        self.received = 0
        self.partial = ""
        self.tail: deque[str] = deque(maxlen=tail_lines)

    def feed(self, text: str) -> None:
        self.received += len(text)
        text = self.partial + text
        cut = text.rfind("\n") + 1
        self.partial = text[cut:]
        self._lines(text[:cut])

    def close(self) -> None:
        self._lines(self.partial)
        self.partial = ""

    def _lines(self, text: str) -> None:
        for line in text.splitlines():
            self.log(f"[ray] {line}")
            self.tail.append(line)


async def _read_stream(client: Any, submission_id: str, copy: _LogCopy) -> None:
    """One connection to Ray's log stream, which starts at the log's first character and ends
    once the job has ended and its last line is sent; what `copy` already has is skipped."""
    seen = 0
    async for chunk in client.tail_job_logs(submission_id):
        fresh = chunk[max(0, copy.received - seen) :]
        seen += len(chunk)
        if fresh:
            copy.feed(fresh)


async def _follow(client: Any, submission_id: str, copy: _LogCopy, poll_interval: float, log: Callable[[str], None]) -> Any:
    """Stream the log into `copy` while reading the status every `poll_interval` s; the job's last info."""
    last_status, broken = None, 0
    while True:
        received = copy.received
        stream = asyncio.ensure_future(_read_stream(client, submission_id, copy))
        while True:
            await asyncio.wait({stream}, timeout=poll_interval)
            info = await asyncio.to_thread(_patiently, lambda: client.get_job_info(submission_id), log)
            status = _status(info)
            if status != last_status:
                log(f"Ray job {submission_id}: {status}")
                last_status = status
            if stream.done():
                break
            if status in TERMINAL:  # Ray's stream lingers seconds after the end: the rest is fetched once
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream
                logs = await asyncio.to_thread(_patiently, lambda: client.get_job_logs(submission_id), log)
                copy.feed(logs[copy.received :])
                return info
        error = stream.exception()
        if error is None and status in TERMINAL:
            return info
        broken = 1 if copy.received > received else broken + 1  # a stream that brought lines resets the count
        if broken > STREAM_RETRIES:
            raise AirflowException(f"the log stream of Ray job {submission_id} broke {broken} times in a row: {error}")
        log(f"the log stream of Ray job {submission_id} {'broke (' + str(error) + ')' if error else 'closed'}; reconnecting")
        await asyncio.sleep(min(2**broken, 16))


def _run_coroutine(coroutine: Any) -> Any:
    """asyncio.run, in a thread of its own where this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def follow_job(
    client: Any,
    submission_id: str,
    log: Callable[[str], None],
    poll_interval: float = 2.0,
    tail_lines: int = LOG_TAIL_LINES,
) -> Any:
    """Copy the job's log to `log` as the job writes it until the job ends; raise RayJobFailed
    unless it SUCCEEDED.

    While the job runs, the log comes through Ray's log stream (``tail_job_logs``): each line
    crosses the network once however long the job runs (polling ``get_job_logs`` fetches the whole
    log every time: for a days-long training job, gigabytes in all). A broken stream (the job
    server restarted) is opened again and the lines already copied are skipped. The status is read
    every `poll_interval` seconds beside it; once the job has ended, the stream (which lingers
    seconds after the end) is closed and what it had not brought yet is taken from one
    ``get_job_logs``.

    A job whose entrypoint exited with status 2 (crawlmill's bad input or config) raises
    RayJobBadInput, which Airflow does not retry; any other end but SUCCEEDED raises RayJobFailed,
    retried as the task's retries say."""
    copy = _LogCopy(log, tail_lines)
    info = _run_coroutine(_follow(client, submission_id, copy, poll_interval, log))
    copy.close()
    status = _status(info)
    if status != "SUCCEEDED":
        # Ray's message repeats up to 20,000 characters of log after its first line; keep the first line.
        summary = re.sub(r",? last available logs.*$", "", (info.message or "").split("\n", 1)[0])
        bad_input = status == "FAILED" and exit_code(info) == BAD_INPUT_EXIT
        error = RayJobBadInput if bad_input else RayJobFailed
        raise error(
            f"Ray job {submission_id} ended {status}: {summary}"
            + (f" (exit status {BAD_INPUT_EXIT}: bad input or config; no retry can fix it, so none is made)" if bad_input else "")
            + f"\n--- last {tail_lines} lines of the job's log ---\n" + "\n".join(copy.tail)
        )
    return info
