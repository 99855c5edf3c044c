"""Batch jobs that survive a restart: the job record, the stores that keep it, and its codec.

A job is written to a :class:`JobStore` *before* anything is sent to the
provider, with every request serialized, and updated with the provider's
batch id right after the provider accepted it. See :mod:`forge.batch` (and
docs/batch.md) for how a job interrupted at any point is resumed without
being submitted, or paid for, twice.

Two stores ship with forge:

- :class:`SQLiteJobStore` (the default, standard library only): one file,
  ``$XDG_DATA_HOME/forge/jobs.sqlite3`` unless told otherwise. WAL journal,
  ``synchronous=FULL`` and one transaction per change, so a change is on disk
  when the call returns and a crash at any moment leaves the previous or the
  new state, never a torn one.
- :class:`RedisJobStore`, for services on several hosts sharing their jobs.
  Each change is one MULTI/EXEC transaction (or one script); durability is
  Redis's (use ``appendonly yes`` with ``appendfsync always`` to lose nothing).

``FORGE_JOB_STORE`` picks the store for :class:`~forge.Registry`: a file path,
``sqlite:///path`` or ``redis://host:port/db``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
import threading
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from forge import errors as _errors
from forge._secrets import redact
from forge.errors import ConfigError, ForgeError, ProviderError
from forge.types import Request, Response

__all__ = [
    "BatchJob",
    "JobState",
    "JobStore",
    "RedisJobStore",
    "SQLiteJobStore",
    "decode_request",
    "decode_result",
    "default_job_store_path",
    "encode_request",
    "encode_result",
    "open_job_store",
]

JobState = Literal["submitting", "submitted", "completed", "cancelled", "expired", "failed"]
_FINAL_STATES = ("completed", "cancelled", "expired", "failed")


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A batch job as the job store keeps it.

    ``state``: ``submitting`` (recorded; the provider may or may not have the
    batch yet), ``submitted`` (``batch_id`` is the provider's id), then
    ``completed`` / ``cancelled`` / ``expired`` / ``failed`` once the results
    (replies and per-item errors) are stored with the job. ``model`` is the
    vendor model name; ``count`` the number of requests.
    """

    id: str
    provider: str
    model: str
    state: JobState
    count: int
    created_at: float
    updated_at: float
    batch_id: str | None = None
    message: str | None = None

    @property
    def done(self) -> bool:
        """The job's results are in the store."""
        return self.state in _FINAL_STATES

    @property
    def custom_ids(self) -> list[str]:
        """The id each request carries in the provider batch (also the job's marker there)."""
        return [f"{self.id}-{i}" for i in range(self.count)]


@runtime_checkable
class JobStore(Protocol):
    """Where batch jobs live between processes. Every method is one atomic change or read."""

    async def create(self, job: BatchJob, requests: Sequence[str]) -> None:
        """Record a new job with its serialized requests (in order). Raises if the id exists."""
        ...

    async def get(self, job_id: str) -> BatchJob | None:
        """The job, or None."""
        ...

    async def requests(self, job_id: str) -> list[str]:
        """The job's serialized requests, in order."""
        ...

    async def update(
        self,
        job_id: str,
        *,
        state: JobState | None = None,
        batch_id: str | None = None,
        message: str | None = None,
        expect_state: JobState | None = None,
        now: float,
    ) -> bool:
        """Change the job; with ``expect_state``, only if it is in that state. Returns whether it changed."""
        ...

    async def finish(
        self, job_id: str, results: Mapping[int, str], *, state: JobState, message: str | None, now: float
    ) -> None:
        """Store every result (serialized, by index) and the final state, in one transaction."""
        ...

    async def results(self, job_id: str) -> dict[int, str]:
        """The stored results by index (empty until the job is done)."""
        ...

    async def list(self, *, limit: int = 100) -> list[BatchJob]:
        """The newest jobs first."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# --------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forge_jobs (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    batch_id TEXT,
    message TEXT
);
CREATE TABLE IF NOT EXISTS forge_job_items (
    job_id TEXT NOT NULL REFERENCES forge_jobs(id),
    idx INTEGER NOT NULL,
    request TEXT NOT NULL,
    result TEXT,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS forge_jobs_created ON forge_jobs(created_at);
"""
_COLUMNS = "id, provider, model, state, count, created_at, updated_at, batch_id, message"


def default_job_store_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/forge/jobs.sqlite3`` (``~/.local/share/forge/jobs.sqlite3`` without it)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(base) / "forge" / "jobs.sqlite3"


class SQLiteJobStore:
    """A :class:`JobStore` in one SQLite file (standard library only).

    Every change is a single ``BEGIN IMMEDIATE ... COMMIT`` in WAL mode with
    ``synchronous=FULL``: durable when the call returns, atomic if the process
    dies mid-way. Calls run in a worker thread so the event loop never waits
    on ``fsync``. Several processes may share the file.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_job_store_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if str(self.path) != ":memory:":
                _create_private(self.path)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def _write(self, fn: typing.Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def _read(self, fn: typing.Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            return fn(self._connect())

    async def create(self, job: BatchJob, requests: Sequence[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO forge_jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(job)
            )
            conn.executemany(
                "INSERT INTO forge_job_items (job_id, idx, request) VALUES (?, ?, ?)",
                [(job.id, i, r) for i, r in enumerate(requests)],
            )

        await asyncio.to_thread(self._write, op)

    async def get(self, job_id: str) -> BatchJob | None:
        def op(conn: sqlite3.Connection) -> BatchJob | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM forge_jobs WHERE id = ?", (job_id,)).fetchone()
            return _job(row) if row else None

        result: BatchJob | None = await asyncio.to_thread(self._read, op)
        return result

    async def requests(self, job_id: str) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT request FROM forge_job_items WHERE job_id = ? ORDER BY idx", (job_id,)
            ).fetchall()
            return [r[0] for r in rows]

        result: list[str] = await asyncio.to_thread(self._read, op)
        return result

    async def update(
        self,
        job_id: str,
        *,
        state: JobState | None = None,
        batch_id: str | None = None,
        message: str | None = None,
        expect_state: JobState | None = None,
        now: float,
    ) -> bool:
        sets = ["updated_at = ?"]
        args: list[object] = [now]
        for column, value in (("state", state), ("batch_id", batch_id), ("message", message)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        where = "id = ?"
        args.append(job_id)
        if expect_state is not None:
            where += " AND state = ?"
            args.append(expect_state)

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(f"UPDATE forge_jobs SET {', '.join(sets)} WHERE {where}", args).rowcount == 1

        changed: bool = await asyncio.to_thread(self._write, op)
        return changed

    async def finish(
        self, job_id: str, results: Mapping[int, str], *, state: JobState, message: str | None, now: float
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE forge_job_items SET result = ? WHERE job_id = ? AND idx = ?",
                [(payload, job_id, i) for i, payload in results.items()],
            )
            conn.execute(
                "UPDATE forge_jobs SET state = ?, message = ?, updated_at = ? WHERE id = ?",
                (state, message, now, job_id),
            )

        await asyncio.to_thread(self._write, op)

    async def results(self, job_id: str) -> dict[int, str]:
        def op(conn: sqlite3.Connection) -> dict[int, str]:
            rows = conn.execute(
                "SELECT idx, result FROM forge_job_items WHERE job_id = ? AND result IS NOT NULL", (job_id,)
            ).fetchall()
            return {int(i): r for i, r in rows}

        result: dict[int, str] = await asyncio.to_thread(self._read, op)
        return result

    async def list(self, *, limit: int = 100) -> list[BatchJob]:
        def op(conn: sqlite3.Connection) -> list[BatchJob]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM forge_jobs ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
            return [_job(r) for r in rows]

        result: list[BatchJob] = await asyncio.to_thread(self._read, op)
        return result

    async def aclose(self) -> None:
        # In a worker thread, as every other call: the lock may be held by a write
        # waiting (up to 30 s) on another process's transaction.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"SQLiteJobStore({str(self.path)!r})"


def _create_private(path: Path) -> None:
    """Create the database file owner-only (0o600) before SQLite opens it: it holds prompts and
    replies. SQLite gives its -wal and -shm files the database file's permissions."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


def _row(job: BatchJob) -> tuple[object, ...]:
    return (job.id, job.provider, job.model, job.state, job.count, job.created_at, job.updated_at,
            job.batch_id, job.message)


def _job(row: Sequence[Any]) -> BatchJob:
    return BatchJob(
        id=row[0], provider=row[1], model=row[2], state=row[3], count=int(row[4]),
        created_at=float(row[5]), updated_at=float(row[6]), batch_id=row[7], message=row[8],
    )


# --------------------------------------------------------------------------- Redis

# KEYS[1] = job hash; ARGV = expect_state ('' for none), then field/value pairs.
_REDIS_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'state') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


class RedisJobStore:
    """A :class:`JobStore` in Redis, shared by every process and host using the same ``prefix``.

    Args:
        client: a ``redis.asyncio.Redis`` (the caller closes it), or
        url: ``redis://host:port/db`` to open one (closed by :meth:`aclose`).
        prefix: key prefix; jobs live under ``{prefix}:job:{id}``.
    """

    def __init__(
        self, url: str | None = None, *, client: object | None = None, prefix: str = "forge"
    ) -> None:
        if client is None:
            try:
                import redis.asyncio as redis_asyncio
            except ImportError as exc:
                raise ConfigError(
                    "RedisJobStore needs the redis package: pip install 'forge-llm[redis]'.", key="job_store"
                ) from exc
            client = redis_asyncio.Redis.from_url(url or "redis://localhost:6379/0")
            self._owns = True
        else:
            self._owns = False
        self._r: Any = client
        self.prefix = prefix
        self._update_script: Any = None

    def _key(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}:job:{job_id}{':' + part if part else ''}"

    async def create(self, job: BatchJob, requests: Sequence[str]) -> None:
        key = self._key(job.id)
        if await self._r.exists(key):
            raise ValueError(f"job {job.id!r} already exists in {self!r}")
        mapping = {k: v for k, v in _hash(job).items() if v is not None}
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            if requests:
                pipe.rpush(self._key(job.id, "requests"), *requests)
            pipe.zadd(f"{self.prefix}:jobs", {job.id: job.created_at})
            await pipe.execute()

    async def get(self, job_id: str) -> BatchJob | None:
        data = await self._r.hgetall(self._key(job_id))
        if not data:
            return None
        return _from_hash({_text(k): _text(v) for k, v in data.items()})

    async def requests(self, job_id: str) -> list[str]:
        return [_text(v) for v in await self._r.lrange(self._key(job_id, "requests"), 0, -1)]

    async def update(
        self,
        job_id: str,
        *,
        state: JobState | None = None,
        batch_id: str | None = None,
        message: str | None = None,
        expect_state: JobState | None = None,
        now: float,
    ) -> bool:
        if self._update_script is None:
            self._update_script = self._r.register_script(_REDIS_UPDATE)
        args: list[str] = [expect_state or "", "updated_at", repr(now)]
        for name, value in (("state", state), ("batch_id", batch_id), ("message", message)):
            if value is not None:
                args += [name, value]
        return bool(await self._update_script(keys=[self._key(job_id)], args=args))

    async def finish(
        self, job_id: str, results: Mapping[int, str], *, state: JobState, message: str | None, now: float
    ) -> None:
        fields_ = {"state": state, "updated_at": repr(now)}
        if message is not None:
            fields_["message"] = message
        async with self._r.pipeline(transaction=True) as pipe:
            if results:
                pipe.hset(self._key(job_id, "results"), mapping={str(i): r for i, r in results.items()})
            pipe.hset(self._key(job_id), mapping=fields_)
            await pipe.execute()

    async def results(self, job_id: str) -> dict[int, str]:
        data = await self._r.hgetall(self._key(job_id, "results"))
        return {int(_text(k)): _text(v) for k, v in data.items()}

    async def list(self, *, limit: int = 100) -> list[BatchJob]:
        ids = await self._r.zrevrange(f"{self.prefix}:jobs", 0, limit - 1)
        jobs = [await self.get(_text(i)) for i in ids]
        return [j for j in jobs if j is not None]

    async def aclose(self) -> None:
        if self._owns:
            await self._r.aclose()

    def __repr__(self) -> str:
        return f"RedisJobStore(prefix={self.prefix!r})"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hash(job: BatchJob) -> dict[str, str | None]:
    return {
        "id": job.id, "provider": job.provider, "model": job.model, "state": job.state,
        "count": str(job.count), "created_at": repr(job.created_at), "updated_at": repr(job.updated_at),
        "batch_id": job.batch_id, "message": job.message,
    }


def _from_hash(data: Mapping[str, str]) -> BatchJob:
    return BatchJob(
        id=data["id"], provider=data["provider"], model=data["model"],
        state=data["state"],  # type: ignore[arg-type]
        count=int(data["count"]), created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]), batch_id=data.get("batch_id"), message=data.get("message"),
    )


def open_job_store(spec: str | os.PathLike[str] | None = None) -> JobStore:
    """A job store from a path, ``sqlite:///path`` or ``redis://...`` (default: ``$FORGE_JOB_STORE``,
    else the SQLite file at :func:`default_job_store_path`)."""
    if spec is None:
        spec = os.environ.get("FORGE_JOB_STORE") or None
    if spec is None:
        return SQLiteJobStore()
    text = os.fspath(spec)
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisJobStore(text)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
    return SQLiteJobStore(text)


# --------------------------------------------------------------------------- codec
#
# Requests and results are stored as JSON built from the dataclass fields, so a
# field added to Request or Response later is stored without touching this code.


def _encode(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, object] = {}
        for f in fields(value):
            if f.name == "raw":
                continue
            item = getattr(value, f.name)
            if f.default is not dataclasses.MISSING and item == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and item == f.default_factory():
                continue
            out[f.name] = _encode(item)
        return out
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(tp: object, value: object) -> object:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _decode_union(args, value)
    if origin is tuple and isinstance(value, list):
        elem = args[0] if args else object
        return tuple(_decode(elem, v) for v in value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        hints = typing.get_type_hints(tp)
        kwargs = {k: _decode(hints[k], v) for k, v in value.items() if k in hints}
        return tp(**kwargs)
    return value


def _decode_union(members: tuple[object, ...], value: object) -> object:
    """``value`` decoded as the first member of ``X | Y | None`` it fits (a dataclass or a tuple)."""
    for arg in members:
        if arg is type(None):
            continue
        if dataclasses.is_dataclass(arg) and isinstance(value, dict):
            return _decode(arg, value)
        if typing.get_origin(arg) is tuple and isinstance(value, list):
            return _decode(arg, value)
    return value


def encode_request(request: Request) -> str:
    """A request as JSON text. Raises TypeError when ``extra`` holds something JSON cannot carry."""
    return json.dumps(_encode(request), separators=(",", ":"), ensure_ascii=False)


def decode_request(text: str) -> Request:
    """The inverse of :func:`encode_request`."""
    value = _decode(Request, json.loads(text))
    assert isinstance(value, Request)
    return value


_ERROR_FIELDS = ("provider", "model", "status", "request_id", "retry_after", "code", "job_id")


def encode_result(result: Response | ForgeError) -> str:
    """A reply (without ``raw``) or an item's error as JSON text."""
    if isinstance(result, Response):
        return json.dumps({"response": _encode(result)}, separators=(",", ":"), ensure_ascii=False)
    error: dict[str, object] = {
        "type": type(result).__name__,
        # A provider may echo the key in a per-item error: job rows outlive the process.
        "message": redact(result.message if isinstance(result, ProviderError) else str(result)),
    }
    for name in _ERROR_FIELDS:
        value = getattr(result, name, None)
        if value is not None:
            error[name] = value
    return json.dumps({"error": error}, separators=(",", ":"), ensure_ascii=False)


def decode_result(text: str) -> Response | ForgeError:
    """The inverse of :func:`encode_result` (errors come back as the same forge error class)."""
    data = json.loads(text)
    if "response" in data:
        value = _decode(Response, data["response"])
        assert isinstance(value, Response)
        return value
    error = data["error"]
    cls = getattr(_errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, ForgeError)):
        cls = ProviderError
    # Rebuilt without calling __init__: subclasses differ in their required arguments.
    exc = cls.__new__(cls)
    Exception.__init__(exc, error.get("message", ""))
    if isinstance(exc, ProviderError):
        exc.message = str(error.get("message", ""))
        exc.headers = {}
        for name in ("provider", "model", "status", "request_id", "retry_after", "code"):
            setattr(exc, name, error.get(name, "" if name == "provider" else None))
    if isinstance(exc, _errors.BatchError):
        exc.job_id = error.get("job_id")
    return exc
