"""The Optuna study a sweep's workers share: opening its storage, and deciding who runs what.

Any Optuna RDB storage URL works (`sqlite:///...`, `postgresql://...`, `mysql://...`); the
database is opened and checked before any work, and a URL that is malformed, lacks its driver or
cannot be reached is one `UserError` line (with the password hidden).

Several workers running the same command on one study run `--trials N` trials between them:

- A worker starts a trial only while finished (complete or pruned) plus running trials are
  fewer than N; otherwise it waits for the running ones, which may still fail and need redoing.
- Two workers can pass that check at once, so after `study.ask()` a trial checks again against
  the trials numbered before it (storages number trials in one sequence): if N of them are
  finished or running, it is surplus, is marked failed with the user attribute `surplus`, and
  runs nothing. So no two workers run the same trial, and no more than N run.
- A worker records a heartbeat for its running trial (a thread, every `heartbeat_seconds`). A
  trial whose heartbeat is older than `grace_seconds` (its worker was killed, or its machine
  lost) is marked failed by the next worker that looks, and `RetryHeartbeatStaleTrialCallback`
  queues a copy with the same settings, which the next `ask()` hands out first. A trial stopped
  by Ctrl-C is failed at once and queued again the same way by its own worker.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from pathlib import Path

from nas.base.errors import UserError

SURPLUS = "surplus"  # user attribute of a trial that found the study already had enough
INTERRUPTED = "interrupted"  # user attribute of a trial stopped by Ctrl-C (queued again, not a failure)
RETRY_OF = "retry_of"  # user attribute: the trial this one repeats (after Ctrl-C)


def _quiet_optuna():
    """Optuna logs every trial and warns about experimental features we chose on purpose; the
    sweep prints its own one line per trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def shown_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given; it has no password field
        return url


def open_storage(url: str, heartbeat_seconds: int, grace_seconds: int):
    """An RDBStorage with heartbeats and retries of stale trials; UserError if it cannot be used."""
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    _quiet_optuna()
    try:
        scheme = make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"--storage {url}: not a database URL (e.g. sqlite:///study.db, "
                        "postgresql://user:pass@host/db)") from None
    # SQLite: wait for a lock held by another worker instead of failing at once. Networked
    # databases: give up on an unreachable host after 10 s instead of the TCP default of minutes.
    connect_args = {"timeout": 60} if scheme == "sqlite" else {"connect_timeout": 10}
    database = make_url(url).database if scheme == "sqlite" else None
    # Two workers creating a new database's tables at once collide (Optuna's schema setup is not
    # atomic: "UNIQUE constraint failed: alembic_version"); on one machine a file lock orders them.
    lock = file_lock(Path(database + ".lock")) if database and database != ":memory:" else contextlib.nullcontext()

    def connect():
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": connect_args},
            heartbeat_interval=heartbeat_seconds, grace_period=grace_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        )

    try:
        with lock:
            try:
                return connect()
            except sqlalchemy.exc.IntegrityError:
                # Workers on several machines set up a new database's tables at once: the loser
                # finds them made by the winner a moment later.
                time.sleep(2)
                return connect()
    except ImportError:
        hint = " (pip install psycopg2-binary)" if scheme == "postgresql" else ""
        raise UserError(f"--storage {shown_url(url)}: the database driver for {scheme} is not installed{hint}") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise UserError(f"--storage {shown_url(url)}: cannot open the database ({reason})") from None


def open_study(storage, name: str, record: dict, budgets: tuple[float, ...] | None, sampler, make_budgets):
    """Create or load the study; the first worker records the sweep's settings and latency budgets
    in it (`budgets`, else `make_budgets()`), later workers must bring the same settings, and the
    same budgets when they name them. Returns (study, budgets)."""
    import json

    import optuna

    record = json.loads(json.dumps(record))  # as the storage hands it back: tuples become lists
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"],
                                load_if_exists=True, sampler=sampler)
    if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]:
        raise UserError(f"study {name!r}: exists with other objectives; use another --study name")
    attrs = study.user_attrs
    if "settings" not in attrs:
        study.set_user_attr("settings", record)
        attrs = study.user_attrs
    if attrs["settings"] != record:
        changed = sorted(k for k in set(record) | set(attrs["settings"]) if record.get(k) != attrs["settings"].get(k))
        raise UserError(f"study {name!r}: was started with other settings ({', '.join(changed)}); rerun it with the "
                        "same ones, or use another --study name")
    if "budgets" not in attrs:
        study.set_user_attr("budgets", list(budgets if budgets is not None else make_budgets()))
        attrs = study.user_attrs
    stored = tuple(attrs["budgets"])
    if budgets is not None and stored != tuple(budgets):
        raise UserError(f"study {name!r}: its latency budgets are {list(stored)} ms, not {list(budgets)}; "
                        "rerun with the same --budgets, or use another --study name")
    return study, stored


def counts(study) -> dict:
    """Trials by what they mean for the sweep: finished, running, waiting (queued retries), failed."""
    from optuna.trial import TrialState

    out = {"finished": 0, "running": 0, "waiting": 0, "failed": 0}
    trials = study.get_trials(deepcopy=False)
    # A failed trial that was queued again (stale, or by Ctrl-C) is being redone, not a failure.
    redone = {n for t in trials for n in (*t.system_attrs.get("retry_history", ()), t.user_attrs.get(RETRY_OF))}
    for trial in trials:
        if trial.user_attrs.get(SURPLUS) or trial.number in redone:
            continue
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            out["finished"] += 1
        elif trial.state == TrialState.RUNNING:
            out["running"] += 1
        elif trial.state == TrialState.WAITING:
            out["waiting"] += 1
        elif trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED):
            out["failed"] += 1
    return out


def is_surplus(study, number: int, wanted: int) -> bool:
    """True when `wanted` trials numbered before `number` are already finished or running."""
    from optuna.trial import TrialState

    taken = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    earlier = [t for t in study.get_trials(deepcopy=False, states=taken)
               if t.number < number and not t.user_attrs.get(SURPLUS)]
    return len(earlier) >= wanted


def fail_stale_trials(study) -> None:
    import optuna

    optuna.storages.fail_stale_trials(study)


def repeated_trial(study, number: int) -> int | None:
    """The number of the trial that trial `number` repeats (a stale or interrupted one), or None.

    A stale trial's copy names it in the system attribute `failed_trial` (set by Optuna's retry
    callback, which only a stored trial shows), an interrupted one's in the user attribute `retry_of`."""
    stored = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    return stored.system_attrs.get("failed_trial", stored.user_attrs.get(RETRY_OF))


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock between processes on this machine, held on `path` (the file stays: it is
    only a handle). Without `path`'s folder there is nothing to lock, and the caller's own open
    of that folder reports the error."""
    import fcntl

    try:
        handle = open(path, "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def heartbeat(storage, trial, seconds: int):
    """Record the trial's heartbeat now and every `seconds` until the block ends.

    Optuna beats only inside `study.optimize`; this sweep drives `ask`/`tell` itself so that it can
    check for surplus trials and resume interrupted ones, hence its own small thread.
    """
    stop = threading.Event()
    trial_id = trial._trial_id  # the storage's key for the trial; Optuna offers no public accessor

    def beat():
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(seconds):
                return

    storage.record_heartbeat(trial_id)  # before the block: a trial without any beat is never found stale
    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
