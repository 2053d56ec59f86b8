"""Every file of ours in a run or sweep folder is written by replacing it: a fresh file beside
the target, created exclusively (so a link planted there is never written through), then
renamed over the target. A reader never sees half a file; a crash leaves the old one whole."""
import glob
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def replacing(path: str | Path, mode: str = "w", durable: bool = False, **open_kwargs):
    """An open file that becomes ``path`` when the block ends (``durable``: synced to disk
    first, and the rename too); nothing changes at ``path`` if the block raises."""
    path = Path(path)
    for debris in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):  # of a writer killed mid-way
        debris.unlink(missing_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would have made it
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def replace_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` by replacing it."""
    with replacing(path) as f:
        f.write(text)


def links_in(folder: Path) -> list[Path]:
    """Every symbolic link below ``folder`` (none followed) but inside W&B's own ``wandb/``
    (which links its latest run): the project makes none in a run folder, so each one was put
    there by something else."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [Path(root) / name for name in dirs + files if (Path(root) / name).is_symlink()]
        dirs[:] = [d for d in dirs if d != "wandb"]
    return sorted(found)


def save_figure(fig, path: str | Path, **savefig) -> None:
    """A matplotlib figure saved to ``path`` (its format from the suffix) by replacing it."""
    with replacing(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix[1:], **savefig)
