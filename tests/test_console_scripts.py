"""Every console script of pyproject.toml as a user runs it, on a real small case: it exits 0
with its result on stdout (the result, not a dump), and on a mistake it exits non-zero with one
line on stderr naming it, leaving no run folder behind."""
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import tomllib
from pathlib import Path

import pytest
import yaml

import alexnet_lit
from conftest import REPO, write_image
from test_report import write_figure1_sweep, write_sweep

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent  # pip install -e . puts them beside the interpreter
CLASSES = ("ant", "bee", "cat")  # 6 training and 2 validation images each


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert (BIN / script).is_file(), f"{script} is not installed: pip install -e ."
    return subprocess.run([str(BIN / script), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def one_line(done: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed (and nothing on stdout)."""
    assert done.returncode != 0, done.stdout[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and not done.stdout.strip(), done.stdout[-1000:] + done.stderr[-2000:]
    return lines[0]


def quiet(done: subprocess.CompletedProcess, progress: str) -> None:
    """Output that is not a terminal: one ``progress`` line on stderr per epoch or validation,
    no progress bar's carriage returns, no library warning (compute before update, deprecations)
    or advertisement."""
    assert len(re.findall(rf"^{progress}$", done.stderr, re.MULTILINE)) == 1, done.stderr[-3000:]
    assert "\r" not in done.stderr + done.stdout
    assert not re.search(r"Warning|Tip:|deprecated", done.stderr), done.stderr[-3000:]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Class folders of generated JPEGs: train/<class>/*, val/<class>/*."""
    root = tmp_path_factory.mktemp("images")
    for split, count in (("train", 6), ("val", 2)):
        for c, name in enumerate(CLASSES):
            for i in range(count):
                write_image(root / split / name / f"{i}.jpg", size=(90, 80), seed=100 * c + i)
    return root


@pytest.fixture(scope="module")
def prepared(images, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("prepared") / "images76"
    return run("alexnet-prepare", images, out, "--image-size", "76", "--workers", "1", cwd=out.parent), out


@pytest.fixture(scope="module")
def figure1_sweep(tmp_path_factory) -> Path:
    return write_figure1_sweep(tmp_path_factory.mktemp("figure1"))


def test_the_scripts_are_those_of_pyproject():
    assert sorted(SCRIPTS) == sorted(SUCCEEDS) == sorted(FAILS)


def prepare_succeeds(prepared, **_):
    done, out = prepared
    return done, rf"{out}: 3 classes, train 18 images \(0 skipped\), val 6 images \(0 skipped\) at 76x76, raw, in \d+ s"


def train_succeeds(prepared, tmp_path, **_):
    """On the prepared folder, its class count taken from prepared.json (none given)."""
    run_dir = tmp_path / "run"
    done = run("alexnet-train", "experiment=tiny", "data=folder", f"data.root={prepared[1]}", "data.batch_size=6",
               "trainer.max_epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["data"]["num_classes"] == 3
    quiet(done, r"epoch 1/1: train top-1 error [01]\.\d{4}, top-3 error [01]\.\d{4}; validation top-1 error "
                r"[01]\.\d{4}, top-3 error [01]\.\d{4}; lr 0\.02; \d+ s")
    return done, rf".*run folder {run_dir}: final validation top-1 error [01]\.\d{{4}}, top-3 error [01]\.\d{{4}}"


def summary_succeeds(tmp_path, **_):
    params = sum(p.numel() for p in alexnet_lit.alexnet(num_classes=3, overrides=["experiment=tiny"]).parameters())
    done = run("alexnet-summary", "experiment=tiny", "data.num_classes=3", cwd=tmp_path)
    return done, rf"AlexNet: 67x67 input, 2 tower\(s\), 3 classes\nlayer .*\n(.*\n)+total .* {params:,} .*"


def evaluate_succeeds(trained_run, tmp_path, **_):
    """ckpt= a run folder: its best.ckpt, on the run's data (80 validation images)."""
    done = run("alexnet-evaluate", f"ckpt={trained_run}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    quiet(done, r"validation: top-1 error [01]\.\d{4}, top-4 error [01]\.\d{4}, loss \d+\.\d{4}")
    return done, (rf"network +view +top-1 err top-4 err +loss\n{trained_run} +center .*\n{trained_run} +tencrop .*\n"
                  rf"80 images; written to {tmp_path / 'eval' / 'eval.json'}")


def predict_succeeds(trained_run, images, tmp_path, **_):
    done = run("alexnet-predict", f"ckpt={trained_run}", f"files={images / 'val'}", "topk=2",
               f"hydra.run.dir={tmp_path / 'predict'}", cwd=tmp_path)
    lines = "".join(rf"{images / 'val' / c / f'{i}.jpg'}: class00\d \d\.\d{{3}}; class00\d \d\.\d{{3}}\n"
                    for c in CLASSES for i in range(2))
    return done, rf"{lines}6 images; written to {tmp_path / 'predict' / 'predictions.csv'}"


def figures_succeeds(trained_run, tmp_path, **_):
    done = run("alexnet-figures", f"ckpt={trained_run}", "queries=2", "neighbours=2",
               f"hydra.run.dir={tmp_path / 'figures'}", cwd=tmp_path)
    return done, (r"conv1 colour specificity per tower \(mean\): \d\.\d{3}, \d\.\d{3}\n"
                  rf"figures written to {tmp_path / 'figures'}")


def report_succeeds(tmp_path, **_):
    sweep = write_sweep(tmp_path / "sweep")
    return run("alexnet-report", sweep, cwd=tmp_path), rf"wrote {sweep / 'report.md'} and {sweep / 'report.png'}"


def figure1_succeeds(figure1_sweep, tmp_path, **_):
    out = tmp_path / "figure1"
    done = run("alexnet-figure1", figure1_sweep, "--out", out, cwd=tmp_path)
    # at 0.5: ReLU after 1.5 epochs, tanh 2.67 (epochs_to interpolates); both fastest inside their grid
    return done, (r"ReLU 1\.8x faster than tanh; fastest rates \{'relu': 0\.01, 'tanh': 0\.01\}; "
                  rf"wrote {out / 'figure1.png'}, {out / 'figure1.md'} and {out / 'figure1.json'}")


SUCCEEDS = {"alexnet-prepare": prepare_succeeds, "alexnet-train": train_succeeds, "alexnet-summary": summary_succeeds,
            "alexnet-evaluate": evaluate_succeeds, "alexnet-predict": predict_succeeds,
            "alexnet-figures": figures_succeeds, "alexnet-report": report_succeeds, "alexnet-figure1": figure1_succeeds}


@pytest.mark.slow
@pytest.mark.parametrize("script", SUCCEEDS)
def test_a_script_that_succeeds_exits_0_with_its_result_on_stdout(script, request, tmp_path, images, prepared,
                                                                  figure1_sweep):
    trained_run = request.getfixturevalue("trained_run") if script in ("alexnet-evaluate", "alexnet-predict",
                                                                       "alexnet-figures") else None
    done, expected = SUCCEEDS[script](prepared=prepared, images=images, trained_run=trained_run,
                                      figure1_sweep=figure1_sweep, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.fullmatch(expected, done.stdout.strip()), done.stdout


# what each is given by mistake -> what its one line says
FAILS = {
    "alexnet-prepare": (["{tmp}/missing", "{tmp}/out"], "prepare: {tmp}/missing does not exist: expected a data set folder holding "
                        "train/ and a validation folder of class folders, or one written by python -m alexnet_lit.prepare"),
    "alexnet-train": (["experiment=tiny", "+ablation=[no_lrn,no_lnr]", "hydra.run.dir={tmp}/run"],
                      "unknown ablation 'no_lnr': expected one of no_augment, no_conv2, no_conv3, no_conv4, "
                      "no_conv5, no_dropout, no_lrn, no_overlap, no_overlap_covering, no_pca, no_weight_decay, none, one_tower, tanh"),
    "alexnet-summary": (["data=folder", "hydra.run.dir={tmp}/run"], "data.num_classes is not given: expected the "
                        "number of classes, or data.root to count them in"),
    "alexnet-evaluate": (["ckpt=[{tmp},{tmp}/nowhere]", "hydra.run.dir={tmp}/run"],
                         "ckpt={tmp}: no checkpoint file there, nor a run folder with checkpoints/best.ckpt"),
    "alexnet-predict": (["ckpt={tmp}/nowhere", "files={tmp}", "hydra.run.dir={tmp}/run"],
                        "ckpt={tmp}/nowhere: no checkpoint file there, nor a run folder with checkpoints/best.ckpt"),
    "alexnet-figures": (["ckpt={tmp}", "optim.lr=-1", "hydra.run.dir={tmp}/run"],
                        "bad config value: optim.lr=-1: expected a number >= 0"),
    "alexnet-report": (["{tmp}/nowhere"], "python -m alexnet_lit.report: SWEEP_DIR {tmp}/nowhere is not a folder "
                       "(--help lists the arguments)"),
    "alexnet-figure1": (["{tmp}"], "report: {tmp}: no job folders (.hydra/config.yaml) below it"),
}


@pytest.mark.slow
def test_a_script_given_a_mistake_exits_non_zero_with_one_line(tmp_path):
    started = {}
    for script, (args, _) in FAILS.items():  # all at once: each spends its seconds importing
        (tmp_path / script).mkdir()
        started[script] = subprocess.Popen([str(BIN / script), *(a.format(tmp=tmp_path / script) for a in args)],
                                           cwd=tmp_path / script, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
    for script, proc in started.items():
        stdout, stderr = proc.communicate(timeout=300)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert one_line(done) == FAILS[script][1].format(tmp=tmp_path / script), script
        assert not (tmp_path / script / "run").exists(), script  # no run folder made


def on_a_terminal(command: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal of 100 columns as its stdin, stdout and stderr;
    its exit status and everything it printed."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(command, cwd=cwd, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    printed = bytearray()
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the process closed the terminal's last copy
            break
        if not chunk:
            break
        printed += chunk
    os.close(primary)
    return process.wait(timeout=600), printed.decode(errors="replace")


def test_training_on_a_terminal_shows_lightnings_bar_and_no_epoch_lines(tmp_path, cache_dir):
    """experiment=tiny, as every preset, shows progress on a terminal: Lightning's bar (its
    carriage returns), the model summary, and not the one line per epoch made for log files."""
    status, printed = on_a_terminal([str(BIN / "alexnet-train"), "experiment=tiny", "data.num_classes=4",
                                     "trainer.max_epochs=1", f"paths.cache_dir={cache_dir}",
                                     f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert status == 0, printed[-3000:]
    assert "Epoch 0: 100%" in printed and "\r" in printed.replace("\r\n", "")
    assert "Total params" in printed
    assert "epoch 1/1:" not in printed and "Warning" not in printed
