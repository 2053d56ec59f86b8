"""A run folder belongs to one run and one job at a time:

- :func:`run_folder_lock`: a job holds an OS lock on its folder while it runs (released by the
  kernel when the process dies, so ``kill -9`` leaves nothing stale); a second job stops
  before it changes anything there, naming the holder. Every process of one DDP job (those
  Lightning or torchrun start for it) shares its job's lock.
- :func:`check_resume`: a job resumes only a ``last.ckpt`` of its own run, its config equal to
  the job's but for :data:`MAY_CHANGE`, and one that is whole (alexnet_lit.weights).
"""
import errno
import fcntl
import hashlib
import logging
import os
import socket
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from alexnet_lit.callbacks import CheckpointRun
from alexnet_lit.trust import MOVED
from alexnet_lit.weights import CheckpointError, read_file
from alexnet_lit.writing import links_in

log = logging.getLogger(__name__)
LOCK = ".lock"
HELD = "ALEXNET_LIT_RUN_FOLDER_LOCKED"  # the folder a job's launching process holds, for its children
# Keys a resumed run may change: how long it trains, where and how it logs, saves and runs fast.
MAY_CHANGE = ("ckpt_path", "paths", "logger", "callbacks", "speed", "trainer.max_epochs", "trainer.max_steps",
              "trainer.max_time", "trainer.enable_progress_bar", "trainer.enable_model_summary",
              "trainer.log_every_n_steps", "data.num_workers")



class RunFolderLocked(RuntimeError):
    """Another job holds the run folder; this one has changed nothing in it."""


class NotThisRun(CheckpointError):
    """A whole checkpoint, but not one this job may resume: refused, nothing changed."""


@contextmanager
def run_folder_lock(folder: Path, check=lambda: None):
    """Hold ``folder``'s lock (``folder/.lock``, which names the holder) while inside; raise
    :class:`RunFolderLocked` naming the holder's PID and host if another job holds it. Where
    the file system cannot lock, warn and go on. ``check()`` runs once the folder is held and
    before this job names itself there: a job it refuses leaves the folder as it was."""
    folder = Path(folder).resolve()
    if held(folder):  # started by the process that holds it
        check()
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:  # never through a link planted there, and only a plain file
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunFolderLocked(f"{folder / LOCK} is a symbolic link, not this project's lock: "
                                  "this job stopped without changing anything") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunFolderLocked(f"{folder / LOCK} is not a plain file: this job stopped without changing anything")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a process that has not yet named itself"
        os.close(fd)
        error = RunFolderLocked(f"run folder {folder} is in use by another job ({holder}); "
                                "this job stopped without changing anything in it")
        log.error(f"skipped: {error}")  # in a sweep, named as it happens; the other jobs go on
        raise error from None
    except OSError as err:  # e.g. ENOLCK on some network file systems
        os.close(fd)
        warnings.warn(f"run folder {folder}: this file system cannot lock files ({err}); nothing "
                      "stops a second job from writing into this folder at the same time")
        check()
        with _holding(folder):
            yield
        return
    links = links_in(folder)
    if links:
        os.close(fd)
        raise RunFolderLocked(f"{links[0]} is a symbolic link: the project makes none in a run folder, so this job "
                              "writes nothing through it and stopped without changing anything")
    try:
        check()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        with _holding(folder):
            yield
    finally:
        os.close(fd)  # releases the lock


_HELD_HERE: set[str] = set()  # the folders this process has held: their logs are its own


@contextmanager
def _holding(folder: Path):
    """Tell this process's log (:class:`RunLog`) and children that it holds ``folder``."""
    _HELD_HERE.add(str(folder))
    os.environ[HELD] = str(folder)
    try:
        yield
    finally:
        os.environ.pop(HELD, None)


def held(folder: Path) -> bool:
    """Whether this process (or the job that started it) holds ``folder``."""
    return os.environ.get(HELD) == str(Path(folder).resolve())


class RunLog(logging.FileHandler):
    """A run's log (conf/hydra/job_logging/nofollow.yaml: ``train.log`` in its run folder),
    written once this process holds (or has held) the folder, the lines before it then: a job
    refused there logs to the console alone, and the folder stays byte for byte as it was.
    Appended to, never through a link planted at its name (the job stops before it starts)."""

    def __init__(self, filename, mode="a", encoding=None, errors=None):
        super().__init__(filename, mode, encoding, delay=True, errors=errors)
        self.waiting: list[logging.LogRecord] = []

    def emit(self, record):
        folder = Path(self.baseFilename).parent.resolve()
        if self.stream is None and not (held(folder) or str(folder) in _HELD_HERE):
            self.waiting.append(record)
            return
        for earlier in self.waiting:
            super().emit(earlier)
        self.waiting.clear()
        super().emit(record)

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def holder(folder: Path) -> str | None:
    """Who holds ``folder``'s lock (as the lock file names it), or None where no live job does
    (no lock file, or one no process holds: the kernel released it when its holder died)."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # absent, or a link the job that meets it will refuse
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "a job that has not yet named itself"
    finally:
        os.close(fd)  # releases the shared lock, if taken


def _moved(value):
    """``value`` with every class path of :data:`MOVED` replaced by its present one."""
    if isinstance(value, dict):
        return {k: _moved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v) for v in value]
    return MOVED.get(value, value) if isinstance(value, str) else value


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in MAY_CHANGE)


def config_differences(saved: dict, cfg: DictConfig) -> list[str]:
    """``key: saved -> now`` for every key of ``cfg`` or of the ``saved`` (resolved) config
    that differs, but those of :data:`MAY_CHANGE` and those ``cfg`` derives from other keys
    (an interpolation such as ``${paths.output_dir}/checkpoints``: its sources are compared);
    a class path of :data:`MOVED` in ``saved`` counts as its present one."""
    old, new = _flat(_moved(saved)), _flat(OmegaConf.to_container(cfg, resolve=True))
    derived = {k for k, v in _flat(OmegaConf.to_container(cfg, resolve=False)).items()
               if isinstance(v, str) and "${" in v}
    return [f"{key}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}"
            for key in sorted(old.keys() | new.keys())
            if not _may_change(key) and key not in derived and old.get(key, "(absent)") != new.get(key, "(absent)")]


def job_folder(overrides) -> str:
    """A sweep job's folder name (conf/hydra: ``hydra.sweep.subdir``): its command-line
    overrides but those of :data:`MAY_CHANGE`, sorted, ``/`` as ``_``. Adding a seed or an
    ablation to a sweep leaves every other job's folder as it was, so a table grows in its
    folder, and a job re-run with a longer schedule or other logging resumes its own run."""
    kept = sorted(o for o in map(str, overrides) if not _may_change(o.split("=", 1)[0].lstrip("+~")))
    name = ",".join(kept).replace(os.sep, "_") or "default"
    if len(name.encode()) > 200:  # file systems allow 255 bytes a name
        name = f"{name.encode()[:180].decode(errors='ignore')}..{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return name


def check_resume(path: str | None, cfg: DictConfig) -> None:
    """Before a run resumes from ``path``: the file is a whole checkpoint (:class:`CheckpointError`
    naming what is wrong otherwise) of ours whose run had this config but for :data:`MAY_CHANGE`
    (:class:`NotThisRun` naming what it is, or the keys that differ)."""
    if path is None:
        return
    contents = read_file(path, mmap=True)
    missing = [k for k in ("state_dict", "loops", "callbacks", "optimizer_states") if k not in contents]
    if missing:
        raise NotThisRun(f"{path}: not a training checkpoint of this project (no {', '.join(missing)}); "
                              "resume from one with ckpt_path=PATH, or use init_from=PATH for its weights alone")
    run = contents.get(CheckpointRun.KEY)
    if run is None:  # written before checkpoints held their run's config
        return
    differences = config_differences(run["config"], cfg)
    if differences:
        raise NotThisRun(
            f"{path} is another run's: its config differs from this job's in {'; '.join(differences)}. "
            "Run this config in another folder (hydra.run.dir=...), or start this folder afresh with ckpt_path=null")
