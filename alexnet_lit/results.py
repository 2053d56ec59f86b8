"""results.json, the record a run leaves in its folder for reports, searches and sweeps, defined
once: :class:`Results` (its :data:`VERSION` recorded in it), written by :func:`write_results`
and :func:`record_failure`, read by :func:`read_results`; a file that does not fit is one
:class:`ResultsFileError` naming the file and the key. Besides, what a record says of where it
ran, naming no machine (:func:`git_commit`, :func:`shown`, :func:`portable`), and JSON written
whole (:func:`write_json`). No torch: a report reads records with this module alone; the
callback that keeps a run's record is alexnet_lit.callbacks.ResultsWriter."""
import json
import math
import subprocess
import sys
import types
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Literal, NewType, Union, get_args, get_origin

from alexnet_lit.writing import replace_text

VERSION = 2  # 2 added version and error_type; a record without a version is of version 1
Fraction = NewType("Fraction", float)  # an error rate, a share of units: from 0 to 1
Status = Literal["running", "completed", "failed", "interrupted"]  # interrupted: by SIGTERM, to be resumed
Verdict = Literal["learns", "learns after a loss spike", "at chance", "exploded and at chance", "collapsed",
                  "exploded", "unknown"]


@dataclass
class Learning:
    """Whether the run learned (alexnet_lit.inspect.learning.learning_verdict)."""
    verdict: Verdict
    collapsed: bool | None = None  # None: recorded before the collapse rule
    collapse_reasons: list[str] = field(default_factory=list)
    chance_loss: float | None = None  # ln(classes)
    first_train_loss: float | None = None
    max_train_loss: float | None = None
    max_train_loss_step: int | None = None
    at_chance_steps: int | None = None  # the steps of the second half with the loss at chance
    steps: int | None = None  # the steps of the second half


@dataclass
class LrnLayer:
    """An LRN layer's divisor at the last validation (alexnet_lit.inspect.probes)."""
    k_beta: float  # the divisor of a constant rescale
    divisor_mean: float | None = None
    divisor_p95: float | None = None


@dataclass
class Conv1Colour:
    """Figure 3's measure on conv1 (alexnet_lit.inspect.pictures.colour_specificity): each
    kernel's score in kernel order (the first ``tower_sizes[0]`` are tower 1's), each tower's mean."""
    kernels: list[float]
    tower_sizes: list[int]
    tower_means: list[float]


@dataclass
class LrDrop:
    """The first epoch trained at a lower learning rate, and that rate."""
    epoch: int
    lr: float


@dataclass
class Results:
    """A run's record, results.json (README lists what each key holds). Errors are fractions;
    None where not measured (yet)."""
    status: Status
    ablation: list[str]  # the ablation names
    seed: int | None
    version: int = VERSION
    error: str | None = None  # what ended a failed run: "<its class>: <its message>"
    error_type: str | None = None  # its class (NonFiniteLossError: a non-finite training loss)
    init: str | None = None
    params: int | None = None
    git_commit: str | None = None  # with -dirty where the checkout had uncommitted changes
    run_dir: str | None = None
    val_top1_err: Fraction | None = None
    val_top5_err: Fraction | None = None
    train_top1_err: Fraction | None = None  # the last epoch's augmented batches, dropout on
    train_top5_err: Fraction | None = None
    train_eval_top1_err: Fraction | None = None  # training images scored as validation scores
    train_eval_top5_err: Fraction | None = None
    val_official_top1_err: Fraction | None = None  # the data set's own validation images
    val_official_top5_err: Fraction | None = None
    best_val_top1_err: Fraction | None = None
    best_val_top5_err: Fraction | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    steps: int | None = None
    processes: int | None = None
    wall_time_s: float | None = None
    learning: Learning | None = None
    lrn: dict[str, LrnLayer] | None = None  # per LRN layer
    dead_units: dict[str, Fraction] | None = None  # per ReLU layer, the share silent on every image
    conv1_colour: Conv1Colour | None = None  # None for one tower
    lr_drops: list[LrDrop] | None = None  # None: not recorded (records before them)


class ResultsFileError(ValueError):
    """A results.json that does not fit :class:`Results`, named with why (the key and value at fault)."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


def read_results(path: str | Path) -> Results:
    """The record at ``path``; a :class:`ResultsFileError` where it is not JSON, not a JSON
    object, lacks a key :class:`Results` requires, has one it does not know, a value of another
    type, a NaN or an error outside 0 to 1, or a version this module does not read."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsFileError(path, f"not valid JSON ({error})") from None
    try:
        results = fitted(Results, {"version": 1, **data} if isinstance(data, dict) else data, "")
    except ValueError as error:
        raise ResultsFileError(path, str(error)) from None
    if not 1 <= results.version <= VERSION:
        raise ResultsFileError(path, f"version {results.version}: this alexnet_lit reads versions 1 to {VERSION}")
    if results.version == 1 and results.error:  # version 1 wrote an error as "<its class>: <its message>" alone
        results = replace(results, error_type=results.error.partition(":")[0])
    return results


def write_results(path: Path, results: Results) -> None:
    """Write the record ``results`` to ``path`` whole (:func:`write_json`)."""
    write_json(path, asdict(results))


def failure(error: BaseException) -> dict:
    """What a record says of the error that ended its run: ``error`` and ``error_type``."""
    return dict(error=f"{type(error).__name__}: {error}", error_type=type(error).__name__)


def record_failure(path: Path, error: BaseException, meta: dict) -> None:
    """Mark the run of ``path`` (results.json) failed with ``error``, keeping all it holds: a
    run that stops on a bad checkpoint or config keeps what its earlier attempts measured. A
    record that is missing or does not fit is started afresh from ``meta`` (the run's
    ablation, seed, ...: alexnet_lit.build.build_run)."""
    try:
        held = read_results(path)
    except (OSError, ValueError):
        held = Results("failed", **meta)
    write_results(path, replace(held, status="failed", version=VERSION, **failure(error)))


def fitted(kind, value, key: str):
    """``value`` (parsed JSON) as the schema's ``kind``: a dataclass above built from a JSON
    object, each item of a list or mapping fitted in turn, else the value itself; a ValueError
    naming ``key`` (dotted: ``learning.verdict``) and the value where it does not fit."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):  # X | None
        return None if value is None else fitted(next(a for a in args if a is not type(None)), value, key)
    if is_dataclass(kind) and isinstance(value, dict):
        known = {f.name: f for f in fields(kind)}
        for name in value:
            if name not in known:
                raise ValueError(f"unknown key '{within(key, name)}'")
        for name, f in known.items():
            if name not in value and f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"no key '{within(key, name)}'")
        return kind(**{name: fitted(known[name].type, v, within(key, name)) for name, v in value.items()})
    if origin is list and isinstance(value, list):
        return [fitted(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict and isinstance(value, dict):
        return {name: fitted(args[1], v, within(key, name)) for name, v in value.items()}
    if not fits(kind, value):
        raise ValueError(f"{key or 'the file'} is {json.dumps(value)[:40]}, expected {expected(kind)}")
    return value


def within(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def fits(kind, value) -> bool:
    """Whether ``value`` is a plain value of ``kind``: a number is never a boolean, nor NaN."""
    if get_origin(kind) is Literal:
        return value in get_args(kind)
    if kind in (str, bool):
        return isinstance(value, kind)
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if kind is int:
        return number and isinstance(value, int)
    if kind is float:
        return number
    return kind is Fraction and number and 0 <= value <= 1


def expected(kind) -> str:
    """``kind`` in words, as a message about a value that does not fit it says it."""
    origin = get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(get_args(kind))
    if origin is list:
        return "a list"
    if origin is dict or is_dataclass(kind):
        return "a JSON object"
    return {str: "a string", bool: "true or false", int: "an integer", float: "a number",
            Fraction: "a number from 0 to 1"}[kind]


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, with ``-dirty`` if it has edits."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def shown(path: str | Path, placeholder: str) -> str:
    """How a committed record names ``path``, naming no particular machine: relative to the
    working folder where it lies inside it, else ``PLACEHOLDER/<its name>`` (the placeholder
    standing for the folder that holds it, e.g. ``DATA/imagenette2_224``)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return f"{placeholder}/{path.name}"


def shown_override(override: str) -> str:
    """A Hydra override as a record shows it: an absolute path as its value made
    :func:`shown` (``DATA`` for the ``data.`` keys, ``FOLDER`` for the others)."""
    key, sep, value = override.partition("=")
    if not sep or not Path(value).is_absolute():
        return override
    return f"{key}={shown(value, 'DATA' if key.lstrip('+~').startswith('data.') else 'FOLDER')}"


def portable(value, folders: dict[str, str | Path]):
    """``value`` with machine paths replaced: the interpreter by ``python`` and each of
    ``folders`` (NAME -> an absolute or relative folder) by NAME wherever it appears as an
    absolute path, so that a committed record names no particular machine (as :func:`shown`
    does for one path). Strings inside dicts and lists are rewritten too."""
    forms = {sys.executable: "python"}
    for name, folder in folders.items():
        forms.update({str(form): name for form in (Path(folder), Path(folder).resolve())
                      if form.is_absolute() and form != Path(form.anchor)})
    longest_first = sorted(forms, key=len, reverse=True)

    def rewrite(value):
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        if isinstance(value, str):
            for form in longest_first:
                value = value.replace(form, forms[form])
        return value

    return rewrite(value)


def write_json(path: Path, data: dict) -> None:
    """Write by replacing (alexnet_lit.writing): a reader never sees half a file."""
    replace_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
