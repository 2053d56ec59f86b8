"""Docs that cannot drift: every fenced block of README.md and docs/*.md says, in an HTML comment
on the line above it, whether the suite runs it, and those it runs, run:

    <!-- docs test: run -->                       run as a user would
    <!-- docs test: run, with OVERRIDES -->       at the smallest size: OVERRIDES appended to each
                                                  Hydra command (train, evaluate, predict, figures, summary)
    <!-- docs test: checked[, with OVERRIDES] --> run, and its printed lines found in the output, in order
    <!-- docs test: not run, WHY -->              not run, saying why

Python examples (``>>>``) run as doctests, a page's blocks in order in one namespace; command
lines (a ``bash`` block, or the ``$`` lines of a transcript) run as processes, in a folder where
the names the pages use (``run``, ``run_seed1``, ``photos``, ``outputs/tiny-4c``) are real short
runs and images. ``pip install`` is not run (the suite runs in the installed package), nor
``python -m pytest`` (the suite itself). Printed paths are compared relative to that folder, and
Hydra's log prefix (``[time][logger][level] - ``) is left out of the comparison."""
import doctest
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, write_image

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- docs test: (run|checked|not run)(?:, (.*?))? -->")
HYDRA_COMMANDS = {"train", "evaluate", "predict", "figures", "summary"}
LOG_PREFIX = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]", re.MULTILINE)  # a log line's time
NOT_RUN = ("pip install", "python -m pytest")  # the installed package; the suite itself


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    text: str
    kind: str  # run | checked | not run | (none: unmarked)
    note: str  # the overrides (run, checked) or why not (not run)

    def __str__(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def python(self) -> bool:
        return ">>> " in self.text

    def commands(self) -> list[str]:
        """The command lines: every ``$`` line of a transcript, else every line, continuations joined."""
        lines = self.text.replace("\\\n", " ").splitlines()
        prompts = [line[2:] for line in lines if line.startswith("$ ")]
        return [c for line in (prompts or lines) for c in line.split(" && ") if c.strip() and not c.startswith("#")]


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("```"):
                end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
                above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
                marker = MARKER.fullmatch(above.strip())
                found.append(Block(page, i + 1, "\n".join(lines[i + 1:end]) + "\n",
                                   marker.group(1) if marker else "", (marker.group(2) or "") if marker else ""))
                i = end
            i += 1
    return found


BLOCKS = blocks()
RUN = [b for b in BLOCKS if b.kind in ("run", "checked")]


def test_every_block_says_whether_it_is_run():
    unmarked = [str(b) for b in BLOCKS if not b.kind]
    assert not unmarked, f"blocks without a '<!-- docs test: ... -->' line above them: {unmarked}"
    assert all(b.note for b in BLOCKS if b.kind == "not run"), "a block not run says why"
    assert len(BLOCKS) == 51 and len(RUN) == 16  # what the report of this suite counts: found, run
    python_md = [b.line for b in RUN if b.page.name == "python.md" and b.python]
    assert len(python_md) == 6  # every example of the Python page, the trained run's batch among them


@pytest.fixture
def workdir(tmp_path, trained_run, ablation_run) -> Path:
    """Where a page's commands run: the names it gives a finished run and a second one
    (another seed, in the page), and image files."""
    for name, target in (("run", trained_run), ("run_seed1", ablation_run), ("outputs/tiny-4c", trained_run)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(target)
    for i, number in enumerate(("00001440", "00003351", "00008161", "00009111")):
        write_image(tmp_path / "photos" / f"ILSVRC2012_val_{number}.JPEG", size=(120, 90), seed=i)
    return tmp_path


def argv(command: str, overrides: str) -> list[str] | None:
    """The process of one command line, the block's overrides added to a Hydra command; None
    for one the suite does not run (NOT_RUN)."""
    if command.strip().startswith(NOT_RUN):
        return None
    words = shlex.split(command, comments=True)
    if words[:2] == ["python", "-m"] and words[2].startswith("alexnet_lit."):
        name, args = words[2].split(".", 1)[1], words[3:]
    elif words[0].startswith("alexnet-"):
        name, args = words[0].split("-", 1)[1], words[1:]
    else:
        raise AssertionError(f"{command!r}: not a command of ours; mark the block 'not run', saying why")
    extra = shlex.split(overrides.removeprefix("with ")) if name in HYDRA_COMMANDS else []
    return [sys.executable, "-m", f"alexnet_lit.{name}", *args, *extra]


def shown(text: str, folder: Path) -> list[str]:
    """Output lines as a page shows them: paths relative to ``folder``, no log prefix."""
    return [line.rstrip() for line in LOG_PREFIX.sub("", text.replace(f"{folder}/", "")).splitlines()]


def expected_lines(block: Block) -> list[str]:
    """The printed lines of a transcript (``...``: any text), as regular expressions."""
    lines = [line.rstrip() for line in block.text.splitlines() if line.strip() and not line.startswith("$ ")]
    return [re.escape(LOG_PREFIX.sub("", line)).replace(r"\.\.\.", ".*") for line in lines if line != "..."]


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in RUN if not b.python], ids=str)
def test_a_documented_command_runs(block, workdir, cache_dir):
    env = dict(os.environ, ALEXNET_LIT_CACHE=str(cache_dir), WANDB_MODE="offline", WANDB_DIR=str(workdir))
    output = ""
    for command in block.commands():
        args = argv(command, block.note)
        if args is None:
            continue
        done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{block}: {command}\n{done.stderr[-3000:]}"
        output += done.stdout
    if block.kind == "checked":
        printed, position = shown(output, workdir), 0
        for pattern in expected_lines(block):  # each printed line found, in the page's order
            position = next((i + 1 for i in range(position, len(printed)) if re.fullmatch(pattern, printed[i])), None)
            assert position is not None, f"{block}: no line {pattern!r} after the ones before it in\n" + "\n".join(printed)


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted({b.page for b in RUN if b.python}), ids=lambda p: p.name)
def test_a_pages_python_examples_run(page, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    parser, runner, namespace = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS), {}
    for block in (b for b in RUN if b.page == page and b.python):
        text = block.text.replace("/path/to/alexnet-lit", str(REPO))  # the page's name for the clone
        test = parser.get_doctest(text, namespace, str(block), str(page), block.line)
        result = runner.run(test, clear_globs=False)
        namespace = test.globs  # the next block sees what this one defined
        assert result.failed == 0, f"{block}: {result.failed} of {result.attempted} examples failed (printed above)"
