"""Files from elsewhere are data (docs/security.md). Checkpoints, run folders, search databases
and run folders with planted links, each built as a hostile user would build them, with payloads
that write a marker file if anything they name is ever called, are read by every entry point
that reads that kind of file. Each refuses with one error naming the file and the key (or the
link), writes no marker and changes no file outside its own output."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alexnet_lit
from alexnet_lit.callbacks import CheckpointRun
from conftest import REPO, command, train_command

KEY = CheckpointRun.KEY


def gadgets(folder: Path) -> dict[str, object]:
    """Payloads in Hydra's ``_target_`` form, each writing ``folder/<its name>`` if called:
    not only callables a blocklist might name (the defence is an allowlist)."""
    staged = folder / "staged.txt"
    code = f"cbuiltins\nopen\n(V{folder / 'pickle_pair'}\nVw\ntR."  # a protocol-0 pickle, as text
    return {
        "open": {"_target_": "builtins.open", "_args_": [str(folder / "open"), "w"]},
        "savetxt": {"_target_": "numpy.savetxt", "fname": str(folder / "savetxt"), "X": [[0]]},
        "copyfile": {"_target_": "shutil.copyfile", "src": str(REPO / "README.md"), "dst": str(folder / "copyfile")},
        "torch_save": {"_target_": "torch.save", "obj": [], "f": str(folder / "torch_save")},
        "pickle_pair": [  # the pair of the issue: a pickle written as text, then loaded
            {"_target_": "numpy.savetxt", "fname": str(staged), "X": [[0]], "comments": "", "header": code},
            {"_target_": "numpy.load", "file": str(staged), "allow_pickle": True}],
    }


def markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def plant(config: dict, where: str, payload) -> dict:
    """``config`` with ``payload`` at ``where``: inside a layer row, in a list under a new key,
    or as the node's own ``_target_`` (its arguments beside it)."""
    config = json.loads(json.dumps(config))
    if where == "row":
        config["features"]["conv1"]["pwn"] = payload
    elif where == "list":
        config["pwn"] = [1, {"deeper": payload}]
    else:  # "target"
        assert isinstance(payload, dict)
        config = dict(payload)
    return config


@pytest.fixture(scope="module")
def victim(tmp_path_factory) -> Path:
    """A file of the user's outside every run: no entry point may change it."""
    path = tmp_path_factory.mktemp("home") / "notes.txt"
    path.write_text("the user's own notes\n")
    return path


def hostile_checkpoint(trained_run: Path, out: Path, part: str, payload, where: str = "row") -> Path:
    """A copy of the trained run's best.ckpt with ``payload`` planted in its hyper-parameters'
    network config, or in its run record's data or trainer config."""
    contents = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    if part == "hyper_parameters":
        contents["hyper_parameters"]["model"] = plant(contents["hyper_parameters"]["model"], where, payload)
    elif part == "run_data":
        contents[KEY]["config"]["data"]["pwn"] = payload
    else:  # run_model: the record's network config, in a list
        contents[KEY]["config"]["model"]["pwn"] = [payload]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(contents, out)
    return out


class Payload:
    """A pickle that runs code when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# ---------------------------------------------------------------- in-process entry points


@pytest.mark.parametrize("where", ["row", "list", "target"])
@pytest.mark.parametrize("gadget", ["open", "savetxt", "copyfile", "torch_save", "pickle_pair"])
def test_load_refuses_a_checkpoint_whose_network_config_names_a_callable(trained_run, tmp_path, gadget, where):
    if where == "target" and gadget == "pickle_pair":
        pytest.skip("a list cannot stand for the node itself")
    fired = tmp_path / "fired"
    fired.mkdir()
    ckpt = hostile_checkpoint(trained_run, tmp_path / "run" / "checkpoints" / "best.ckpt", "hyper_parameters",
                              gadgets(fired)[gadget], where)
    with pytest.raises(ValueError, match=rf"{ckpt}: hyper_parameters\.model\..*_target_"):
        alexnet_lit.load(ckpt)
    with pytest.raises(ValueError, match=rf"{ckpt}: hyper_parameters\.model\."):
        alexnet_lit.load(ckpt.parent.parent)  # the run folder
    assert markers(fired) == []


@pytest.mark.parametrize("part", ["run_data", "run_model"])
def test_load_and_torch_hub_refuse_a_checkpoint_whose_run_record_names_a_callable(trained_run, tmp_path, part):
    fired = tmp_path / "fired"
    fired.mkdir()
    ckpt = hostile_checkpoint(trained_run, tmp_path / "best.ckpt", part, gadgets(fired)["savetxt"])
    pattern = rf"{ckpt}: {KEY}\.config\.(data\.pwn|model\.pwn\[0\])\._target_ is 'numpy.savetxt'"
    with pytest.raises(ValueError, match=pattern):
        alexnet_lit.load(ckpt)
    with pytest.raises(ValueError, match=pattern):  # weights only, yet the file is refused whole
        torch.hub.load(str(REPO), "alexnet", source="local", weights=ckpt, num_classes=4,
                       overrides=["experiment=tiny"])
    assert markers(fired) == []


def test_a_pickle_that_runs_code_is_refused_without_inviting_weights_only_false(trained_run, tmp_path):
    fired = tmp_path / "fired"
    fired.mkdir()
    contents = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    contents["extra"] = Payload(fired / "pickle")
    ckpt = tmp_path / "best.ckpt"
    torch.save(contents, ckpt)
    for read in (alexnet_lit.load, lambda p: torch.hub.load(str(REPO), "alexnet", source="local", weights=p,
                                                            num_classes=4, overrides=["experiment=tiny"])):
        with pytest.raises(ValueError) as refused:
            read(ckpt)
        message = str(refused.value)
        assert message.startswith(f"{ckpt}: refused") and "GLOBAL" in message
        assert "will likely succeed" not in message and "never needs weights_only=False" in message
    assert markers(fired) == []


def hostile_run_folder(trained_run: Path, out: Path, payload) -> Path:
    """A copy of the trained run whose .hydra/config.yaml plants ``payload`` in its data, and
    whose checkpoint carries no run record (so that its run folder's config is read)."""
    shutil.copytree(trained_run, out, ignore=shutil.ignore_patterns(".lock", "*.log"))
    config = (out / ".hydra" / "config.yaml").read_text()
    (out / ".hydra" / "config.yaml").write_text(config.replace("data:\n", f"data:\n  pwn: {json.dumps(payload)}\n", 1))
    for name in ("best.ckpt", "last.ckpt"):
        contents = torch.load(out / "checkpoints" / name, weights_only=True)
        contents.pop(KEY)
        torch.save(contents, out / "checkpoints" / name)
    return out


def test_load_refuses_a_run_folder_whose_config_names_a_callable(trained_run, tmp_path):
    fired = tmp_path / "fired"
    fired.mkdir()
    run = hostile_run_folder(trained_run, tmp_path / "run", gadgets(fired)["pickle_pair"])
    with pytest.raises(ValueError, match=rf"{run / '.hydra' / 'config.yaml'}: data\.pwn\[0\]\._target_ is 'numpy.savetxt'"):
        alexnet_lit.load(run)
    assert markers(fired) == []


# ------------------------------------------------------------- the commands, as a user runs them


def refused(cmd: list[str], *named: str) -> str:
    """Run ``cmd``; it must fail, naming each of ``named`` in its output."""
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    for name in named:
        assert name in output, (name, output[-3000:])
    return output


@pytest.mark.slow
def test_every_command_that_reads_a_checkpoint_refuses_a_hostile_one(trained_run, tmp_path, cache_dir, victim):
    """evaluate, predict, figures, resume through ckpt_path= and init_from= each stop, naming the
    file and the key; no marker, the user's file unchanged, the trained run untouched."""
    fired = tmp_path / "fired"
    fired.mkdir()
    payload = [*gadgets(fired).values(), {"_target_": "shutil.copyfile", "src": str(REPO / "README.md"), "dst": str(victim)}]
    ckpt = hostile_checkpoint(trained_run, tmp_path / "hostile" / "checkpoints" / "best.ckpt", "hyper_parameters",
                              payload, "list")
    before = {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()}
    key = "hyper_parameters.model.pwn[1].deeper[0]._target_"
    for name, overrides in (("evaluate", [f"ckpt={ckpt}"]), ("predict", [f"ckpt={ckpt}", f"files={tmp_path}"]),
                            ("figures", [f"ckpt={ckpt}"])):
        refused(command(name, tmp_path / name, cache_dir, *overrides), str(ckpt), key)
    refused(train_command(tmp_path / "resumed", cache_dir, "data.num_classes=4", f"ckpt_path={ckpt}"), str(ckpt), key)
    refused(train_command(tmp_path / "init", cache_dir, "data.num_classes=4", f"init_from={ckpt}"), str(ckpt), key)
    assert markers(fired) == []
    assert victim.read_text() == "the user's own notes\n"
    assert {p: p.read_bytes() for p in trained_run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_every_command_that_reads_a_run_folder_refuses_a_hostile_config(trained_run, tmp_path, cache_dir, victim):
    """evaluate, predict and figures read the data of the checkpoint's run folder, report reads
    its config: each names the file and the key, builds nothing from it."""
    fired = tmp_path / "fired"
    fired.mkdir()
    payload = {"_target_": "shutil.copyfile", "src": str(REPO / "README.md"), "dst": str(victim)}
    run = hostile_run_folder(trained_run, tmp_path / "sweep" / "run", [gadgets(fired)["open"], payload])
    ckpt, config = run / "checkpoints" / "best.ckpt", run / ".hydra" / "config.yaml"
    for name, overrides in (("evaluate", [f"ckpt={ckpt}"]), ("predict", [f"ckpt={ckpt}", f"files={run}"]),
                            ("figures", [f"ckpt={ckpt}"])):
        refused(command(name, tmp_path / name, cache_dir, *overrides), str(config), "data.pwn[0]._target_")
    report = refused([sys.executable, "-m", "alexnet_lit.report", str(tmp_path / "sweep"), "--out", str(tmp_path / "report")],
                     "data.pwn[0]._target_ is 'builtins.open'")
    assert "run/results.json" in report  # named, with why
    assert markers(fired) == []
    assert victim.read_text() == "the user's own notes\n"


@pytest.mark.slow
def test_a_resumed_search_runs_only_trials_of_its_own_search_space(tmp_path, cache_dir, victim):
    """A trial planted RUNNING in optuna.db, with a param outside the search's keys (a callback
    whose value is a _target_ node) or a value outside its distribution, is refused, naming the
    trial and the key, before any trial runs."""
    optuna = pytest.importorskip("optuna", reason="the search tests need Optuna: pip install -e '.[search]'")
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    sweep, fired = tmp_path / "search", tmp_path / "fired"
    fired.mkdir()
    search = [sys.executable, "-m", "alexnet_lit.train", "hparams_search=lr", "experiment=tiny", "data.num_classes=4",
              "trainer.max_epochs=1", f"paths.cache_dir={cache_dir}", f"hydra.sweep.dir={sweep}"]
    first = subprocess.run([*search, "hydra.sweeper.n_trials=1"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    node = f"{{_target_:shutil.copyfile,src:{REPO / 'README.md'},dst:{victim}}}"
    planted = study.ask({"+callbacks.pwn": CategoricalDistribution([node]),
                         "optim.lr": FloatDistribution(1e-4, 1e-1, log=True)})
    refused([*search, "hydra.sweeper.n_trials=3"], f"trial {planted.number} has the param '+callbacks.pwn'")
    study.tell(planted.number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({"optim.lr": 5.0})  # a value this search could never draw
    outside = study.ask({"optim.lr": FloatDistribution(1e-4, 100.0, log=True)})
    refused([*search, "hydra.sweeper.n_trials=3"], f"trial {outside.number} has optim.lr=5.0")
    assert victim.read_text() == "the user's own notes\n"
    assert not (sweep / str(planted.number)).exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", [".lock", "results.json", ".hydra/config.yaml", "train.log"])
def test_training_writes_nothing_through_a_link_planted_in_its_run_folder(tmp_path, cache_dir, victim, name):
    """A link at the lock, at results.json, at the saved config or at the log: the job stops,
    naming it, and the file it points to is unchanged."""
    run = tmp_path / "run"
    (run / name).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(victim, run / name)
    refused(train_command(run, cache_dir, "data.num_classes=4", "trainer.max_epochs=1"), name.split("/")[-1])
    assert victim.read_text() == "the user's own notes\n"
    assert not (run / "checkpoints").exists()
