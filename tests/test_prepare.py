"""`python -m alexnet_lit.prepare`: exact resized images, the training set's mean image and
colour PCA, resuming without redoing finished work, the skip policy's report, and the compact
JPEG storage."""
import json
import os
import socket
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_lit.data.colour import PixelStats
from alexnet_lit.data.decode import DecodeError, ImageFiles
from alexnet_lit.data.folder import FolderDataModule
from alexnet_lit.data.preparation import prepare
from alexnet_lit.data.prepared import STORAGE, DamagedData, PreparedImages, PreparedJPEGs, decode_jpegs, read_meta
from alexnet_lit.prepare import prepare_command
from conftest import REPO, on_cuda, survivors, worker_pids, write_image
from test_data_decode import reference

KINDS = [("rgb", (37, 91)), ("gray", (60, 61)), ("cmyk", (50, 70)), ("png", (40, 33)),
         ("rgb", (300, 17)), ("rgb", (64, 48))]
SIZE = 24


def odd_folder(root, per_class=len(KINDS)):
    """Two classes of images of every kind and odd size; two val images per class."""
    for c, name in enumerate(["b_class", "a_class"]):
        for i, (kind, size) in enumerate(KINDS[:per_class]):
            write_image(root / "train" / name / f"{i}.JPEG", kind, size, seed=10 * c + i)
        for i in range(2):
            write_image(root / "val" / name / f"v{i}.jpg", "rgb", (45 + i, 30), seed=50 + 10 * c + i)
    return root


def rows_and_references(out, source, split):
    files = (out / split / "files.txt").read_text().splitlines()
    images = np.load(out / split / "images.npy")
    return images, np.stack([reference(source / f, SIZE) for f in files])


def test_prepared_data_equals_resize_and_centre_crop_of_the_originals(tmp_path):
    source, out = odd_folder(tmp_path / "src"), tmp_path / "out"
    meta = prepare_command([str(source), str(out), "--image-size", str(SIZE), "--workers", "1",
                 "--chunk-size", "4"])
    assert meta["classes"] == ["a_class", "b_class"]  # sorted: indices follow names
    assert meta["splits"] == {"train": {"images": 12, "skipped": 0}, "val": {"images": 4, "skipped": 0}}
    for split in ("train", "val"):
        images, expected = rows_and_references(out, source, split)
        assert images.dtype == np.uint8 and images.shape == (len(expected), SIZE, SIZE, 3)
        np.testing.assert_array_equal(images, expected)
    files = (out / "train" / "files.txt").read_text().splitlines()
    labels = np.load(out / "train" / "labels.npy")
    assert [f.split("/")[1] for f in files] == ["a_class"] * 6 + ["b_class"] * 6
    assert labels.tolist() == [0] * 6 + [1] * 6
    data = PreparedImages(out, "train")
    image, label = data[7]
    assert label == 1 and np.array_equal(image.numpy(), images_row(out, 7))
    assert not (out / "train" / "chunks").exists()  # markers are cleaned up once complete


def images_row(out, row):
    return np.load(out / "train" / "images.npy", mmap_mode="r")[row]


def test_mean_image_and_eigen_decomposition_of_a_known_set(tmp_path):
    # half the pixels black, half white: mean 127.5 everywhere, covariance 0.25 in every entry
    # (0..1 scale), so one eigenvalue 0.75 along (1, 1, 1) / sqrt(3), the other two 0
    source = tmp_path / "src"
    from PIL import Image
    for name, value in (("black", 0), ("white", 255)):
        for split in ("train", "val"):
            (source / split / name).mkdir(parents=True)
            Image.new("RGB", (30, 20), (value,) * 3).save(source / split / name / "x.png")
    prepare(source, tmp_path / "out", image_size=8, workers=1, progress=False)
    stats = PixelStats.load(tmp_path / "out" / "stats.npz")
    np.testing.assert_allclose(stats.mean_image, np.full((8, 8, 3), 127.5))
    np.testing.assert_allclose(stats.eigval, [0.75, 0, 0], atol=1e-12)
    np.testing.assert_allclose(np.abs(stats.eigvec[:, 0]), np.full(3, 3 ** -0.5))
    np.testing.assert_allclose(stats.std, np.full(3, 127.5))


def test_stats_of_a_varied_set_match_numpy_and_do_not_depend_on_workers(tmp_path):
    source = odd_folder(tmp_path / "src")
    stats = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        prepare(source, out, image_size=SIZE, workers=workers, chunk_size=5, progress=False)
        stats[workers] = PixelStats.load(out / "stats.npz")
    _, train = rows_and_references(tmp_path / "out1", source, "train")
    pixels = train.reshape(-1, 3) / 255.0
    eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False, bias=True))
    for s in stats.values():
        np.testing.assert_allclose(s.mean_image, train.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(s.eigval, eigval[::-1], rtol=1e-9)
        np.testing.assert_allclose(np.abs(s.eigvec), np.abs(eigvec[:, ::-1]), atol=1e-9)
        np.testing.assert_allclose(s.std, 255 * pixels.std(axis=0), rtol=1e-6)  # float32
    for split in ("train", "val"):
        assert np.array_equal(np.load(tmp_path / "out1" / split / "images.npy"),
                              np.load(tmp_path / "out2" / split / "images.npy"))


def test_an_interrupted_run_resumes_without_redoing_finished_work(tmp_path):
    source, out = odd_folder(tmp_path / "src"), tmp_path / "out"
    bad = write_image(source / "train" / "b_class" / "3.JPEG", "truncated", (80, 60))
    args = dict(image_size=SIZE, workers=1, chunk_size=4, progress=False)
    with pytest.raises(DecodeError, match="b_class/3.JPEG") as failure:
        prepare(source, out, **args)  # rows 0-3, 4-7 done; rows 8-11 (b_class/2..5) fail
    assert "run the same command again to resume" in str(failure.value)
    assert not (out / "prepared.json").exists()
    assert sorted(p.name for p in (out / "train" / "chunks").iterdir()) == ["000000.npz", "000001.npz"]
    finished = np.array(images_row(out, 0))
    write_image(source / "train" / "a_class" / "0.JPEG", "rgb", (37, 91), seed=999)  # changed
    write_image(bad, "rgb", (80, 60), seed=7)  # repaired
    prepare(source, out, **args)
    images, expected = rows_and_references(out, source, "train")
    np.testing.assert_array_equal(images[0], finished)  # not redone: still the old picture
    assert not np.array_equal(images[0], expected[0])
    np.testing.assert_array_equal(images[1:], expected[1:])
    with pytest.raises(ValueError, match="another image_size"):
        prepare(source, out, **{**args, "image_size": 16})


def test_skip_policy_leaves_bad_files_out_and_lists_them(tmp_path):
    source, out = odd_folder(tmp_path / "src"), tmp_path / "out"
    write_image(source / "train" / "a_class" / "zz_truncated.JPEG", "truncated", (80, 60))
    write_image(source / "val" / "b_class" / "zz_garbage.JPEG", "garbage")
    meta = prepare(source, out, image_size=SIZE, workers=2, chunk_size=3, on_error="skip", progress=False)
    assert meta["splits"] == {"train": {"images": 12, "skipped": 1}, "val": {"images": 4, "skipped": 1}}
    report = (out / "skipped.txt").read_text().splitlines()
    assert len(report) == 2 and "zz_truncated.JPEG" in report[0] + report[1]
    assert "zz_garbage.JPEG" in report[0] + report[1]
    data = PreparedImages(out, "train")
    assert len(data) == 12 and json.loads((out / "prepared.json").read_text())["image_size"] == SIZE
    good = [reference(source / f, SIZE) for f in (out / "train" / "files.txt").read_text().split()
            if "zz_truncated" not in f]
    np.testing.assert_allclose(PixelStats.load(out / "stats.npz").mean_image,
                               np.mean(good, axis=0), rtol=1e-6)  # the bad file not counted
    assert np.load(out / "train" / "labels.npy")[6] == -1  # a_class/zz_truncated.JPEG's row


def test_a_training_subset_keeps_the_first_images_of_each_class_and_the_whole_val(tmp_path):
    source, out = odd_folder(tmp_path / "src"), tmp_path / "out"
    meta = prepare_command([str(source), str(out), "--image-size", str(SIZE), "--workers", "1", "--train-per-class", "2"])
    assert meta["splits"]["train"]["images"] == 4 and meta["splits"]["val"]["images"] == 4
    files = (out / "train" / "files.txt").read_text().split()
    assert files == ["train/a_class/0.JPEG", "train/a_class/1.JPEG", "train/b_class/0.JPEG", "train/b_class/1.JPEG"]
    images, expected = rows_and_references(out, source, "train")
    np.testing.assert_array_equal(images, expected)
    np.testing.assert_allclose(PixelStats.load(out / "stats.npz").mean_image, expected.mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="another .*train_per_class than asked for"):
        prepare(source, out, image_size=SIZE, workers=1, progress=False, train_per_class=3)
    with pytest.raises(ValueError, match="train_per_class=0"):
        prepare(source, tmp_path / "zero", image_size=SIZE, progress=False, train_per_class=0)


def test_cli_reports_errors_naming_what_was_expected(tmp_path):
    with pytest.raises(SystemExit, match=f"prepare: {tmp_path / 'missing'} does not exist"):
        prepare_command([str(tmp_path / "missing"), str(tmp_path / "out")])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def both_storages(tmp_path_factory):
    """The same source prepared raw and as JPEG shards (3 images a shard)."""
    root = tmp_path_factory.mktemp("storages")
    source = odd_folder(root / "src")
    for storage in STORAGE:
        prepare_command([str(source), str(root / storage), "--image-size", "64", "--workers", "2",
              "--chunk-size", "3", "--storage", storage])
    return root


def test_compact_jpeg_format_decodes_close_to_the_raw_pixels(both_storages):
    raw_meta, jpeg_meta = (read_meta(both_storages / s) for s in STORAGE)
    assert (raw_meta["storage"], jpeg_meta["storage"], jpeg_meta["jpeg_quality"]) == ("raw", "jpeg", 95)
    assert not (both_storages / "jpeg" / "train" / "images.npy").exists()
    assert len(list((both_storages / "jpeg" / "train" / "shards").glob("*.jpegs"))) == 4  # 12 images, 3 a shard
    for split in ("train", "val"):
        raw, jpeg = PreparedImages(both_storages / "raw", split), PreparedJPEGs(both_storages / "jpeg", split, decode=True)
        assert len(raw) == len(jpeg) and raw.labels.tolist() == jpeg.labels.tolist()
        for i in range(len(raw)):
            exact, decoded = raw[i][0].numpy(), jpeg[i][0].numpy()
            assert decoded.shape == exact.shape == (64, 64, 3) and decoded.dtype == np.uint8
            assert 30 < psnr(decoded, exact) < float("inf"), (split, i)  # lossy, but close
    raw_stats, jpeg_stats = (PixelStats.load(both_storages / s / "stats.npz") for s in STORAGE)
    np.testing.assert_array_equal(jpeg_stats.mean_image, raw_stats.mean_image)  # of the pixels, not the JPEGs
    np.testing.assert_array_equal(jpeg_stats.eigvec, raw_stats.eigvec)


def test_batched_decode_equals_the_workers_decode(both_storages):
    as_bytes = PreparedJPEGs(both_storages / "jpeg", "train", decode=False)
    decoded = PreparedJPEGs(both_storages / "jpeg", "train", decode=True)
    blobs, labels = as_bytes.collate_fn([as_bytes[i] for i in range(len(as_bytes))])
    assert all(b.dtype == torch.uint8 and b.dim() == 1 for b in blobs)
    batch = decode_jpegs(blobs, torch.device("cpu"))
    assert torch.equal(batch, torch.stack([decoded[i][0] for i in range(len(decoded))]))
    assert labels.tolist() == decoded.labels.tolist()


@on_cuda
def test_nvjpeg_decodes_what_the_cpu_decodes(both_storages):
    """nvJPEG against libjpeg-turbo: another IDCT and chroma upsampling, within 2 levels on
    average (torchvision's own bound for its CUDA decoder) and 30 dB PSNR between them."""
    as_bytes = PreparedJPEGs(both_storages / "jpeg", "train", decode=False)
    blobs = [as_bytes[i][0] for i in range(len(as_bytes))]
    on_gpu = decode_jpegs(blobs, torch.device("cuda"))
    on_cpu = decode_jpegs(blobs, torch.device("cpu"))
    assert on_gpu.is_cuda and on_gpu.shape == on_cpu.shape
    difference = (on_gpu.cpu().float() - on_cpu.float()).abs()
    assert difference.mean() < 2 and psnr(on_gpu.cpu().numpy(), on_cpu.numpy()) > 30


def test_a_corrupt_shard_is_reported_naming_the_file(tmp_path, both_storages):
    """Bytes overwritten, the size kept (one cut short: tests/test_prepared_checks.py)."""
    folder = tmp_path / "jpeg"
    shutil.copytree(both_storages / "jpeg", folder)
    shard = folder / "train" / "shards" / "000001.jpegs"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = bytes(16)
    shard.write_bytes(bytes(data))
    images = PreparedJPEGs(folder, "train", decode=True)
    assert images[2][0].shape == (64, 64, 3)  # the shards left alone still read
    with pytest.raises(DamagedData, match=f"corrupt shard {shard}: the image of row [345]"):
        for i in range(3, 6):
            images[i]


def test_unknown_storage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="storage='png'"):
        prepare(odd_folder(tmp_path / "src"), tmp_path / "out", storage="png")


def test_held_out_training_images_join_val_after_the_official_ones(tmp_path):
    """--held-out-to-val: the training images --train-per-class leaves out are scored as
    validation, after the data set's own (their count recorded), and stay out of the mean image."""
    source, out = odd_folder(tmp_path / "src"), tmp_path / "out"
    meta = prepare_command([str(source), str(out), "--image-size", str(SIZE), "--workers", "1", "--train-per-class", "2",
                 "--held-out-to-val"])
    left_out = 2 * (len(KINDS) - 2)
    assert meta["val_official_images"] == 4
    assert meta["splits"]["train"]["images"] == 4 and meta["splits"]["val"]["images"] == 4 + left_out
    files = (out / "val" / "files.txt").read_text().split()
    assert all(f.startswith("val/") for f in files[:4]) and all(f.startswith("train/") for f in files[4:])
    assert not set(files) & set((out / "train" / "files.txt").read_text().split())
    images, expected = rows_and_references(out, source, "val")
    np.testing.assert_array_equal(images, expected)
    train, _ = rows_and_references(out, source, "train")
    np.testing.assert_allclose(PixelStats.load(out / "stats.npz").mean_image, train.mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="held_out_to_val needs train_per_class"):
        prepare(source, tmp_path / "whole", image_size=SIZE, progress=False, held_out_to_val=True)


@pytest.mark.parametrize("orientation", ["ignore", "apply"])
def test_every_image_mode_is_prepared_as_training_decodes_it_and_the_choice_is_kept(tmp_path, orientation):
    source, out = tmp_path / "src", tmp_path / "out"
    for c, name in enumerate(["a_class", "b_class"]):
        for i, kind in enumerate(["png16", "rgba", "palette", "exif", "rgb"]):
            write_image(source / "train" / name / f"{i}.png", kind, (48, 40), seed=10 * c + i)
        write_image(source / "val" / name / "v.jpg", "exif", (50, 30), seed=c)
    meta = prepare_command([str(source), str(out), "--image-size", str(SIZE), "--workers", "2", "--chunk-size", "3",
                 "--exif-orientation", orientation])
    assert meta["exif_orientation"] == orientation
    for split in ("train", "val"):
        files = (out / split / "files.txt").read_text().splitlines()
        decoded = ImageFiles([(str(source / f), 0) for f in files], SIZE, exif_orientation=orientation)
        np.testing.assert_array_equal(np.load(out / split / "images.npy"),
                                      np.stack([decoded[row][0].numpy() for row in range(len(files))]))
    other = {"ignore": "apply", "apply": "ignore"}[orientation]
    data = FolderDataModule(str(out), num_classes=2, image_size=SIZE, crop_size=SIZE, exif_orientation=other)
    with pytest.raises(ValueError, match=f"data.exif_orientation={other} but {out} was prepared with "
                                         f"exif_orientation={orientation}: prepare it again"):
        data.setup("fit")
    with pytest.raises(ValueError, match="another"):
        prepare(source, out, image_size=SIZE, workers=1, progress=False, exif_orientation=other)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from Linux's /proc")
def test_no_worker_outlives_a_prepare_killed_with_sigkill(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    for c in range(2):
        for i in range(150):
            write_image(source / "train" / f"c{c}" / f"{i}.jpg", "rgb", (400, 300), seed=i)
        write_image(source / "val" / f"c{c}" / "v.jpg", "rgb", (400, 300))
    started = subprocess.Popen([sys.executable, "-m", "alexnet_lit.prepare", str(source), str(out),
                                "--image-size", "128", "--workers", "2", "--chunk-size", "10"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((out / "train" / "chunks").glob("*.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the workers are decoding once a first chunk is done
    workers = worker_pids(started.pid)
    assert len(workers) == 2 and started.poll() is None
    started.kill()
    started.wait()
    assert not survivors(workers), "workers run on after their prepare was killed"
    chunks = sorted((out / "train" / "chunks").glob("*.npz"))
    time.sleep(1)
    assert sorted((out / "train" / "chunks").glob("*.npz")) == chunks  # nobody writes on


def test_entries_named_like_images_that_are_not_files_are_skipped_and_named(tmp_path):
    """A FIFO would block its reader forever, a folder or a socket cannot be read: prepare
    never opens them, names each, and prepares the files."""
    source, out = odd_folder(tmp_path / "src"), tmp_path / "out"
    os.mkfifo(source / "train" / "a_class" / "fifo.jpg")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(source / "val" / "a_class" / "socket.jpg"))
    try:
        with pytest.warns(UserWarning) as caught:
            meta = prepare(source, out, image_size=SIZE, workers=1, chunk_size=3, progress=False)
    finally:
        listener.close()
    said = " ".join(str(w.message) for w in caught)
    assert "fifo.jpg (a FIFO)" in said and "socket.jpg (a socket)" in said
    assert meta["splits"]["train"]["images"] == 12 and meta["splits"]["val"]["images"] == 4
