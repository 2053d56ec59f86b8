"""Files from elsewhere are data (docs/security.md). A config read off disk (a checkpoint's
hyper-parameters or run record, a run folder's ``.hydra/config.yaml``) is checked here before
anything reads it: every value a plain one (None, bool, number, string, list, mapping) and every
``_target_`` at any depth one of this package's (``alexnet_lit.*``) or one that its own
``conf/`` names (Lightning's Trainer, callbacks and loggers), or named before a class moved
(:data:`MOVED`). Nothing but :func:`rebuild`'s short lists is ever built from a file. Its network and data module are then built by :func:`rebuild`,
from :data:`NETWORKS` and :data:`DATA_MODULES` alone, never by Hydra's ``instantiate`` of what the
file says. Configs the user composes (``conf/``, the command line) keep Hydra's full power."""
import functools
import importlib
import inspect
from pathlib import Path

from omegaconf import OmegaConf

# What a file may have rebuilt: the project's network and data modules, by class path.
NETWORKS = ("alexnet_lit.model.AlexNet",)
DATA_MODULES = ("alexnet_lit.data.folder.FolderDataModule", "alexnet_lit.data.synthetic.SyntheticDataModule",
                "alexnet_lit.data.cifar.CIFAR10DataModule")
PLAIN = (type(None), bool, int, float, str)
BUILT = ("model", "data")  # a run config's nodes this project builds objects from
# Classes that have moved since checkpoints named them in their config (``_target_``): a run saved
# before the move is still this job's.
MOVED = {f"alexnet_lit.{old}": f"alexnet_lit.{new}" for old, new in (
    ("faults.AtomicCheckpointIO", "checkpointing.faults.AtomicCheckpointIO"),
    ("faults.LastCheckpoint", "checkpointing.faults.LastCheckpoint"),
    ("faults.NonFiniteLossGuard", "checkpointing.faults.NonFiniteLossGuard"),
    ("preemption.Preemption", "checkpointing.preemption.Preemption"),
    ("resume.ExactResume", "checkpointing.resume.ExactResume"),
    ("resume.StepSeeds", "checkpointing.resume.StepSeeds"),
    ("results.ResumableCSVLogger", "checkpointing.resume.ResumableCSVLogger"),
    ("figure1.TrainErrorTarget", "callbacks.TrainErrorTarget"),
    ("analysis.figure1.TrainErrorTarget", "callbacks.TrainErrorTarget"))}


class UntrustedFile(ValueError):
    """A file from elsewhere asks for something this project does not build from a file;
    nothing was built from it, and nothing written."""


@functools.cache
def named_targets() -> frozenset[str]:
    """Every ``_target_`` the project's own configs name (conf/), and the old paths of moved classes."""
    from alexnet_lit.checks import CONFIG_DIR  # not build's: a report reads configs without torch

    def targets(node):
        if isinstance(node, dict):
            yield from ([node["_target_"]] if isinstance(node.get("_target_"), str) else [])
            for value in node.values():
                yield from targets(value)
        elif isinstance(node, list):
            for value in node:
                yield from targets(value)

    found = {t for path in Path(CONFIG_DIR).rglob("*.yaml")
             for t in targets(OmegaConf.to_container(OmegaConf.load(path)))}
    return frozenset(found | set(MOVED))


def ours(target) -> bool:
    """Whether ``target`` names something in this package (a class of alexnet_lit's)."""
    return isinstance(target, str) and target.startswith("alexnet_lit.") and target.replace(".", "").replace("_", "").isalnum()


def checked(config, source: str | Path, key: str = ""):
    """``config`` as plain containers, each ``_target_`` one of :func:`named_targets`; an
    :class:`UntrustedFile` names ``source``, the key path and what is there otherwise."""
    where = key or "(the top)"
    if isinstance(config, dict):
        out = {}
        for name, value in config.items():
            path = f"{key}.{name}" if key else str(name)
            if not isinstance(name, str):
                raise UntrustedFile(f"{source}: {where} has a key {name!r} that is not a string")
            if name == "_target_" and not (value in named_targets() or ours(value)):
                raise UntrustedFile(f"{source}: {path} is {value!r}, not a class of this project; "
                                    "a file from elsewhere builds nothing else (docs/security.md)")
            out[name] = checked(value, source, path)
        return out
    if isinstance(config, (list, tuple)):
        return [checked(value, source, f"{key}[{i}]") for i, value in enumerate(config)]
    if isinstance(config, PLAIN):
        return config
    raise UntrustedFile(f"{source}: {where} holds a {type(config).__name__}, not a plain value")


def rebuild(config: dict, classes: tuple[str, ...], source: str | Path, key: str):
    """The object of ``config`` (the node ``key`` of ``source``): one of ``classes``, called with
    the node's checked plain values as keywords; no ``_target_`` below it, and no keyword the
    class does not take."""
    config = checked(config, source, key)
    if not isinstance(config, dict):
        raise UntrustedFile(f"{source}: {key} is not a mapping")
    target = MOVED.get(config.get("_target_"), config.get("_target_"))
    if target not in classes:
        raise UntrustedFile(f"{source}: {key}._target_ is {config.get('_target_')!r}; from a file this "
                            f"project builds only {', '.join(sorted(classes))} there")
    kwargs = {k: v for k, v in config.items() if k != "_target_"}
    inner = list(_targets(kwargs, key))
    if inner:
        raise UntrustedFile(f"{source}: {inner[0]} is a _target_ inside {key}; its values must be plain")
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)  # one of ``classes``: ours alone
    unknown = sorted(set(kwargs) - settings(cls))
    if unknown:
        raise UntrustedFile(f"{source}: {key}.{unknown[0]} is not a setting of {target}")
    return cls(**kwargs)


def settings(cls: type) -> set[str]:
    """The keywords ``cls`` takes, those its ``**kwargs`` passes on to its bases included."""
    names = set()
    for klass in cls.__mro__:
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names |= {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names
    return names


def _targets(node, key: str):
    """The key paths of every ``_target_`` in ``node``."""
    if isinstance(node, dict):
        for name, value in node.items():
            path = f"{key}.{name}"
            if name == "_target_":
                yield path
            yield from _targets(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{key}[{i}]")


def run_config(path: Path) -> dict:
    """A run folder's ``.hydra/config.yaml`` (as saved, unresolved), its :data:`BUILT` nodes
    checked (the others, a user's own callbacks among them, are never built from a file)."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as err:  # noqa: BLE001 (any YAML error: one line naming the file)
        raise UntrustedFile(f"{path}: not a run's config ({type(err).__name__}: {err})") from None
    if not isinstance(config, dict):
        raise UntrustedFile(f"{path}: not a run's config (a {type(config).__name__}, not a mapping)")
    return {**config, **{node: checked(config[node], path, node) for node in BUILT if node in config}}
