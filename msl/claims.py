"""Claims: a cell is claimed before it runs, so that two sweeps of one grid never train it twice.

A claim is the file ``<study>/claims/<cell_id>.claim``, created with ``O_CREAT | O_EXCL`` (atomic,
also on NFS), holding JSON: the host, the pid and the pid's start time (so that a reused pid
does not pass for the claimant), when it was claimed, a token, and the Slurm job id where the
cell runs as a Slurm task. It is removed when the cell's run ends (record written or run
failed). A claim is **stale**, and taken over by the next claimant, when

* it names a Slurm job and Slurm says that job is no longer pending or running (``squeue``;
  a job Slurm no longer knows counts as ended), or
* it names no job, was made on this host, and its process is gone.

A claim from another host without a job id, or one whose job Slurm cannot be asked about
(``squeue`` missing or the controller unreachable), is never taken over: running a cell twice
is worse than waiting. Delete the claim file by hand if you know its process is gone.

Taking a claim over (read, judge stale, replace) happens under ``flock`` on
``claims/.lock``; creating a fresh claim needs no lock. A cell whose run failed without writing
a record leaves ``claims/<cell_id>.failed`` (the error's last line) for ``msl status``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SUFFIX = ".claim"
FAILED = ".failed"


@dataclass
class Claim:
    path: Path
    info: dict

    @property
    def cell_id(self) -> str:
        return self.info["cell_id"]

    @property
    def token(self) -> str:
        return self.info["token"]


def folder(study_dir: str | os.PathLike) -> Path:
    return Path(study_dir) / "claims"


def path(claims: str | os.PathLike, cell_id: str) -> Path:
    return Path(claims) / f"{cell_id}{SUFFIX}"


def read(claims: str | os.PathLike, cell_id: str) -> dict | None:
    """The claim's content; None if there is none (or it vanished while being read)."""
    try:
        return json.loads(path(claims, cell_id).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"cell_id": cell_id, "damaged": True}


def all_claims(claims: str | os.PathLike) -> dict[str, dict]:
    """Every claim of a study folder by cell id."""
    found = {}
    for p in sorted(Path(claims).glob(f"*{SUFFIX}")):
        cell_id = p.name[: -len(SUFFIX)]
        info = read(claims, cell_id)
        if info is not None:
            found[cell_id] = info
    return found


def new_token() -> str:
    return uuid.uuid4().hex


def acquire(claims: str | os.PathLike, cell_id: str, *, token: str | None = None,
            job_id: str | None = None, job_states: Callable | None = None) -> Claim | None:
    """Claim ``cell_id`` for this process; None if a live claim of someone else holds it.

    ``token``: a claim that carries the same token is ours already (a Slurm submission claims its
    cells before its tasks start, and hands each task the token). ``job_id``: this process is
    that Slurm task; a claim naming the same job is ours (the task was requeued)."""
    claims = Path(claims)
    claims.mkdir(parents=True, exist_ok=True)
    info = _info(cell_id, token or new_token(), job_id)
    target = path(claims, cell_id)
    if _create(target, info):
        return Claim(target, info)
    with _locked(claims):
        held = read(claims, cell_id)
        if held is None:
            return Claim(target, info) if _create(target, info) else None
        ours = (token and held.get("token") == token) or (job_id and held.get("job_id") == job_id)
        if not ours and not stale(held, job_states):
            return None
        if ours:
            info["job_id"] = job_id or held.get("job_id")
        _replace(target, info)
        return Claim(target, info)


def acquire_many(claims, cell_ids, token: str, job_states: Callable | None = None) -> list[str]:
    """Claim every cell it can under one token (a Slurm submission); returns the cell ids got."""
    got = []
    for cell_id in cell_ids:
        if acquire(claims, cell_id, token=token, job_states=job_states) is not None:
            got.append(cell_id)
    return got


def set_job(claims, cell_id: str, token: str, job_id: str) -> None:
    """Write the Slurm job id into a claim made under ``token`` (after the submission)."""
    with _locked(Path(claims)):
        held = read(claims, cell_id)
        if held and held.get("token") == token and not held.get("job_id"):
            _replace(path(claims, cell_id), {**held, "job_id": job_id})


def release(claim: Claim | None) -> None:
    """Remove the claim if it is still ours (same token)."""
    if claim is None:
        return
    with _locked(claim.path.parent):
        held = read(claim.path.parent, claim.cell_id)
        if held and held.get("token") == claim.token:
            claim.path.unlink(missing_ok=True)


def release_token(claims, cell_ids, token: str) -> None:
    """Remove the claims made under ``token`` (a submission that did not go through)."""
    with _locked(Path(claims)):
        for cell_id in cell_ids:
            held = read(claims, cell_id)
            if held and held.get("token") == token:
                path(claims, cell_id).unlink(missing_ok=True)


def stale(info: dict, job_states: Callable | None = None) -> bool:
    """True if the claim's process or Slurm job has ended (see the module docstring)."""
    if info.get("damaged"):  # unreadable: only a write cut off long ago leaves that
        return True
    if info.get("job_id"):
        states = (job_states or _slurm_states)([info["job_id"]])
        if states is None:  # Slurm cannot be asked: assume the job lives
            return False
        return not is_live(states.get(info["job_id"]))
    if info.get("host") != socket.gethostname():
        return False
    return not pid_alive(int(info.get("pid", -1)), info.get("pid_start"))


LIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
               "SUSPENDED", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "STOPPED",
               "RESV_DEL_HOLD", "SPECIAL_EXIT", "POWER_UP_NODE", "UPDATE_DB"}


def is_live(state: str | None) -> bool:
    """A Slurm job state (``squeue %T``) that may still run; None (unknown job) is not."""
    return bool(state) and state.split()[0].rstrip("+") in LIVE_STATES


def _slurm_states(job_ids):
    from msl.slurm import job_states

    return job_states(job_ids)


def mark_failed(claims, cell_id: str, error: str, job_id: str | None = None) -> None:
    """Leave the error of a run that ended without a record, for ``msl status``."""
    claims = Path(claims)
    claims.mkdir(parents=True, exist_ok=True)
    lines = str(error).strip().splitlines()
    body = {"cell_id": cell_id, "error": lines[-1] if lines else "", "job_id": job_id,
            "host": socket.gethostname(), "time": _now()}
    tmp = claims / f".{cell_id}{FAILED}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(body))
    os.replace(tmp, claims / f"{cell_id}{FAILED}")


def read_failed(claims, cell_id: str) -> dict | None:
    try:
        return json.loads((Path(claims) / f"{cell_id}{FAILED}").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def clear_failed(claims, cell_id: str) -> None:
    (Path(claims) / f"{cell_id}{FAILED}").unlink(missing_ok=True)


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True if process ``pid`` runs on this host (a zombie is dead) and, where ``start`` is
    given, started at that time (``/proc/<pid>/stat`` field 22), so a reused pid is dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (not Linux): kill -0 is all we can say
    state, started = stat
    return state != "Z" and (start is None or started == start)


def _proc_stat(pid: int):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[19])


def _info(cell_id: str, token: str, job_id: str | None) -> dict:
    stat = _proc_stat(os.getpid())
    return {"cell_id": cell_id, "host": socket.gethostname(), "pid": os.getpid(),
            "pid_start": stat[1] if stat else None, "started": _now(), "token": token,
            "job_id": job_id}


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _create(target: Path, info: dict) -> bool:
    """Create ``target`` holding ``info`` unless it exists: the content goes to a temporary file
    first, then ``link`` (atomic, fails if the name exists, also on NFS) puts it in place, so a
    reader never sees a half-written claim. Where hard links are refused, O_EXCL does it."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(info))
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError:
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _replace(target: Path, info: dict) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, target)


@contextlib.contextmanager
def _locked(claims: Path):
    """An exclusive ``flock`` on ``claims/.lock`` (works across hosts on NFS via POSIX locks on
    Linux); where the file system refuses locks, fresh claims stay atomic through O_EXCL."""
    import fcntl

    claims.mkdir(parents=True, exist_ok=True)
    with open(claims / ".lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:
            pass
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
