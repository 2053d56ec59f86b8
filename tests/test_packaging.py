"""The package as a user installs it: a wheel installed outside the source tree runs the
commands (console scripts) with the configs and the paper's table it ships; and what it ships
(the tracked files, the records its generators write) names no particular machine."""
import re
import subprocess
import sys

import pytest

from alexnet_lit.results import portable, shown, shown_override
from conftest import REPO
from test_report import sweep  # noqa: F401 (a fixture)

SCRIPTS = ["alexnet-train", "alexnet-evaluate", "alexnet-predict", "alexnet-summary", "alexnet-figures",
           "alexnet-report", "alexnet-prepare", "alexnet-figure1"]


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_reports_and_summarises(tmp_path, sweep):  # noqa: F811
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"),
                    str(REPO)], check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("alexnet_lit-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True)
    assert sorted(p.name for p in (site / "bin").iterdir() if p.name.startswith("alexnet-")) == sorted(SCRIPTS)
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run([sys.executable, "-c", "import alexnet_lit; print(alexnet_lit.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))

    done = subprocess.run([str(site / "bin" / "alexnet-report"), str(sweep)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| 40.7 |" in (sweep / "report.md").read_text()  # the paper's top-1 of the full net
    summary = subprocess.run([str(site / "bin" / "alexnet-summary"), "data.num_classes=1000"], cwd=tmp_path,
                             env=env, capture_output=True, text=True)
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert "60,965,224" in summary.stdout


MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/home/|/root/|/tmp/|/mnt/|\.\./shared/)")


def test_no_tracked_file_names_a_machine_path():
    """The repository speaks of the project alone: outside tests/ and .ci/ no tracked file (code,
    docs, configs, generated records) holds a path of the machine it was made on; records use
    placeholders (DATA, SWEEP, RUNS) or paths relative to the repo."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    found = []
    for name in tracked.decode().split("\0"):
        path = REPO / name
        if not name or name.startswith(("tests/", ".ci/")) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary (a PNG, a fixture checkpoint)
        found += [f"{name}:{n}: {line.strip()[:120]}" for n, line in enumerate(text.splitlines(), 1)
                  if MACHINE_PATH.search(line)]
    assert not found, "machine paths in tracked files:\n" + "\n".join(found)


def test_records_name_folders_by_placeholder_or_relative_path(tmp_path, monkeypatch):
    """What the generators write instead of machine paths (the records above depend on it)."""
    monkeypatch.chdir(tmp_path)
    assert shown(tmp_path / "ablations" / "runs", "SWEEP") == "ablations/runs"  # inside the working folder
    assert shown("/srv/data/imagenette2_224", "DATA") == "DATA/imagenette2_224"
    assert shown_override("data.root=/srv/data/nette500_76") == "data.root=DATA/nette500_76"
    assert shown_override("+init_from=/srv/weights/a.pth") == "+init_from=FOLDER/a.pth"
    assert shown_override("seed=3") == "seed=3" and shown_override("data=folder") == "data=folder"
    record = {"command": f"{sys.executable} -m alexnet_lit.train data.root=/srv/data/x hydra.run.dir=/srv/runs/0",
              "overrides": ["data.root=/srv/data/x"], "wall_s": 1.5}
    assert portable(record, {"DATA": "/srv/data", "RUNS": "/srv/runs"}) == {
        "command": "python -m alexnet_lit.train data.root=DATA/x hydra.run.dir=RUNS/0",
        "overrides": ["data.root=DATA/x"], "wall_s": 1.5}
    assert portable({"run": "runs/0"}, {"RUNS": "runs"}) == {"run": "runs/0"}  # a relative path is kept


def test_the_installed_dependencies_are_at_or_above_the_floors():
    """pyproject.toml's floors exclude releases known to be bad (docs/development.md): what is
    installed satisfies each requirement, lightning and hydra-core included."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    requirements = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    floors = {r.name: r for r in requirements}
    assert "2.6.6" in str(floors["lightning"].specifier) and "1.3.6" in str(floors["hydra-core"].specifier)
    for requirement in requirements:
        assert requirement.specifier.contains(version(requirement.name), prereleases=True), (requirement, version(requirement.name))
