"""python -m alexnet_lit.predict, and the class names it shows: words from a synset-words file
(kept by prepare), folder names otherwise."""
import csv
import os
import shutil
import subprocess

import pytest

from alexnet_lit.data.decode import DecodeError
from alexnet_lit.data.ilsvrc import display_names, synset_words
from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.synthetic import synthetic_root
from alexnet_lit.figures import figures
from alexnet_lit.predict import predict
from conftest import REPO, command, write_image
from test_data_layout import WNIDS, imagenet  # noqa: F401 (a fixture)


def trained_data(cache_dir):
    """The synthetic set trained_run learnt (conftest.FINISHED_RUN, experiment=tiny)."""
    return synthetic_root(cache_dir, num_classes=4, train_per_class=100, val_per_class=20, size=76, seed=0)


@pytest.mark.parametrize("form", ["LOC_synset_mapping.txt", "synset_words.txt",
                                  "ILSVRC2012_devkit_t12", "ILSVRC2012_devkit_t12.tar.gz"])
def test_class_names_come_from_each_synset_words_file(imagenet, form):  # noqa: F811
    root, truth = imagenet
    assert display_names(root, WNIDS) == WNIDS  # no words file: the folder names
    if form.endswith(".txt"):
        (root / form).write_text("".join(f"{w} words of {w}\n" for w in WNIDS))
    elif form.endswith(".tar.gz"):
        shutil.copy(truth / form, root / form)
    else:
        shutil.copytree(truth / form, root / form)
    assert display_names(root, WNIDS) == [f"words of {w}" for w in WNIDS]


def test_a_malformed_words_file_is_named(tmp_path):
    (tmp_path / "synset_words.txt").write_text("n01440764 tench\nnot-a-wnid\n")
    with pytest.raises(ValueError, match=r"synset_words.txt, line 2 \('not-a-wnid'\)"):
        synset_words(tmp_path)


def test_prepare_keeps_the_class_words(imagenet, tmp_path):  # noqa: F811
    root, truth = imagenet
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} words of {w}\n" for w in WNIDS))
    meta = prepare(root, tmp_path / "prepared", layout="imagenet", image_size=32, workers=1,
                   val_labels=str(truth / "val.txt"), progress=False)
    assert meta["classes"] == WNIDS and meta["class_names"] == [f"words of {w}" for w in WNIDS]


@pytest.mark.slow
def test_predict_names_the_class_of_images_it_was_trained_on(compose_cfg, trained_run, cache_dir, tmp_path):
    train = trained_data(cache_dir) / "train"
    classes = sorted(p.name for p in train.iterdir())
    rows = predict(compose_cfg(f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}",
                               f"files='{train}/*/0000[0-4].jpg'", "topk=3", command="predict"))
    top1 = [r for r in rows if r["rank"] == 1]
    assert len(top1) == 5 * len(classes) and len(rows) == 3 * len(top1)
    right = sum(r["class_name"] == r["file"].split("/")[-2] for r in top1)
    assert right >= 0.9 * len(top1)
    for first, *rest in zip(*[iter(rows)] * 3):
        assert first["probability"] >= rest[0]["probability"] >= rest[1]["probability"]
        assert first["class_name"] == classes[first["class_index"]]
    with open(tmp_path / "run" / "predictions.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [(w["file"], w["class_name"]) for w in written] == [(r["file"], r["class_name"]) for r in rows]


@pytest.mark.slow
def test_the_command_on_a_folder_prints_each_image(tmp_path, cache_dir, trained_run):
    val = trained_data(cache_dir) / "val"
    done = subprocess.run(command("predict", tmp_path / "out", cache_dir,
                                  f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
                                  f"files={val / 'class001'}", "view=center"),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("class001/") == 20 and "20 images; written to" in done.stdout
    assert "class001 " in done.stdout
    missing = subprocess.run(command("predict", tmp_path / "out2", cache_dir,
                                     f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
                                     f"files={tmp_path}/nothing*.jpg"),
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "nothing*.jpg: no image files there" in missing.stderr


@pytest.mark.slow
def test_one_bad_file_is_skipped_and_named_and_the_others_predicted(compose_cfg, trained_run, cache_dir, tmp_path,
                                                                    capsys):
    images = tmp_path / "images"
    images.mkdir()
    good = [shutil.copy(f, images) for f in sorted((trained_data(cache_dir) / "val" / "class002").iterdir())[:3]]
    bad = str(write_image(images / "cut.jpg", "truncated", (120, 90)))
    ckpt = f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}"
    rows = predict(compose_cfg(ckpt, f"files={images}", "topk=1", command="predict"))
    assert sorted(r["file"] for r in rows) == sorted(good)
    out = capsys.readouterr().out
    assert f"skipped cannot decode image {bad}" in out
    assert out.splitlines()[-1].endswith(f"3 images; written to {tmp_path / 'run' / 'predictions.csv'}; "
                                         f"1 skipped (on_error=skip): {bad}")
    with open(tmp_path / "run" / "predictions.csv", newline="") as f:
        assert sorted(row["file"] for row in csv.DictReader(f)) == sorted(good)
    with pytest.raises(DecodeError, match="cut.jpg"):
        predict(compose_cfg(ckpt, f"files={images}", "on_error=error", command="predict"))
    with pytest.raises(DecodeError, match="none of its 1 files decodes"):
        predict(compose_cfg(ckpt, f"files={bad}", command="predict"))


@pytest.mark.slow
@pytest.mark.parametrize("run,extra", [(predict, ["files=IMAGES"]), (figures, [])], ids=["predict", "figures"])
def test_a_checkpoint_and_data_of_other_class_counts_are_refused(compose_cfg, trained_run, cache_dir, tmp_path,
                                                                 run, extra):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    images = str(trained_data(cache_dir) / "val" / "class000")
    cfg = compose_cfg(f"ckpt={ckpt}", "data.num_classes=10", *(o.replace("IMAGES", images) for o in extra),
                      command=run.__name__)
    with pytest.raises(ValueError, match=f"{ckpt} has 4 classes, the data .* has data.num_classes=10"):
        run(cfg)
    assert not list((tmp_path / "run").glob("*.*"))  # refused before writing anything


@pytest.mark.slow
def test_predict_skips_and_names_entries_that_are_not_files(compose_cfg, trained_run, cache_dir, tmp_path):
    """A FIFO named like an image would block the reader forever: predict never opens it."""
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(next((trained_data(cache_dir) / "train").rglob("*.jpg")), photos / "a.jpg")
    os.mkfifo(photos / "x.jpg")
    (photos / "y.jpg").mkdir()
    rows = predict(compose_cfg(f"ckpt={trained_run / 'checkpoints' / 'best.ckpt'}", f"files={photos}",
                               "topk=1", command="predict"))
    assert [r["file"] for r in rows] == [str(photos / "a.jpg")]
