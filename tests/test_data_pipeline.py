"""The batched stage on the device (crops, mirrors, PCA colour noise, centring), the ablation
switches, ten-crop, and the datamodule in a real Trainer."""
import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import TenCrop

from alexnet_lit.data.colour import IMAGENET_EIGVAL, IMAGENET_EIGVEC, PixelStats
from alexnet_lit.data.decode import DecodeError
from alexnet_lit.data.views import NORMALIZE, TENCROP_CENTRE, VIEWS, PaperViews
from alexnet_lit.build import build_datamodule, build_module
from alexnet_lit.prepare import main as prepare_main
from alexnet_lit.testing import read_metrics
from alexnet_lit.train import train
from conftest import DEVICES, on_cuda, write_image


def stats(size: int, mean: np.ndarray | None = None) -> PixelStats:
    mean = np.zeros((size, size, 3), np.float32) if mean is None else mean
    return PixelStats(mean, np.full(3, 50.0, np.float32), np.asarray(IMAGENET_EIGVAL),
                      np.asarray(IMAGENET_EIGVEC), source="test")


def coded(batch: int, size: int) -> torch.Tensor:
    """Images whose pixel (y, x) holds (y, x, image number): every crop tells where it was cut."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.stack([y, x, torch.zeros_like(y)], dim=-1).repeat(batch, 1, 1, 1)
    images[..., 2] = torch.arange(batch).view(batch, 1, 1)
    return images.to(torch.uint8)


@pytest.mark.parametrize("device", DEVICES)
def test_ten_crop_covers_exactly_the_ten_views(device):
    size, crop = 12, 8
    image = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
    views = PaperViews(stats(size), crop, pca_noise=False)(image.to(device), "tencrop").cpu()
    assert views.shape == (1, 10, 3, crop, crop)
    ours = {v.to(torch.uint8).numpy().tobytes() for v in views[0]}
    theirs = {np.asarray(v).transpose(2, 0, 1).tobytes()
              for v in TenCrop(crop)(Image.fromarray(image[0].numpy()))}
    assert len(ours) == 10 and ours == theirs


@pytest.mark.parametrize("device", DEVICES)
def test_ten_crop_mirrors_the_same_five_patches_at_256_and_227(device):
    """The paper's "their horizontal reflections": with 256 - 227 odd, torchvision's TenCrop
    takes the centre of the mirrored image, one pixel off the mirrored centre patch; ours
    (and Caffe's) mirrors the patch itself."""
    image = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8).to(device)
    views = PaperViews(stats(256), 227, pca_noise=False)(image, "tencrop")
    assert views.device == image.device
    assert torch.equal(views[:, 5:], views[:, :5].flip(-1))
    assert torch.equal(views[:, 4], image[:, 14:241, 14:241].permute(0, 3, 1, 2).float())
    assert torch.equal(views[:, 3], image[:, 29:, 29:].permute(0, 3, 1, 2).float())
    assert torch.equal(views[:, TENCROP_CENTRE], PaperViews(stats(256), 227)(image, "center"))


@pytest.mark.parametrize("device", DEVICES)
def test_random_crops_are_uniform_and_half_mirrored_with_the_mean_cut_alike(device):
    size, crop, batch = 10, 7, 4000
    images = coded(batch, size)
    out = PaperViews(stats(size), crop, pca_noise=False)(images.to(device), "random").cpu()
    assert out.shape == (batch, 3, crop, crop)
    top, left_or_right = out[:, 0, 0, 0], out[:, 1, 0, 0]
    mirrored = out[:, 1, 0, 1] < out[:, 1, 0, 0]
    left = torch.where(mirrored, left_or_right - (crop - 1), left_or_right)
    expected = coded(1, size)[0].permute(2, 0, 1).float()
    for b in range(0, batch, 397):  # each view is exactly the crop (mirrored) it claims to be
        view = expected[:2, top[b].long():top[b].long() + crop, left[b].long():left[b].long() + crop]
        assert torch.equal(out[b, :2], view.flip(-1) if mirrored[b] else view)
    assert sorted(top.unique().tolist()) == sorted(left.unique().tolist()) == [0, 1, 2, 3]
    assert 0.45 < mirrored.float().mean() < 0.55
    assert torch.equal(out[:, 2, 0, 0], (torch.arange(batch) % 256).float())  # its own image
    # the mean image is cut out at the same place: images equal to it centre to exactly zero
    mean = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8)
    views = PaperViews(stats(size, mean.numpy().astype(np.float32)), crop, pca_noise=False)
    assert views(mean.repeat(64, 1, 1, 1).to(device), "random").abs().max() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_pca_noise_has_the_papers_statistics(device):
    """Section 4.1: add P (alpha * lambda), alpha ~ N(0, 0.1) per image, the same colour at
    every pixel; drawn many times, the added colour has covariance P diag(0.01 lambda^2) P^T."""
    n = 20000
    images = torch.randint(0, 256, (n, 1, 1, 3), dtype=torch.uint8).expand(n, 4, 4, 3).to(device)  # one colour each
    added = (PaperViews(stats(4), 3, pca_noise=True)(images, "random")
             - PaperViews(stats(4), 3, pca_noise=False)(images, "center")).cpu()
    assert added.std(dim=(2, 3)).max() < 1e-4  # the same colour at every pixel
    colour = added[:, :, 0, 0] / 255  # per image, on the 0..1 scale
    eigval, eigvec = np.asarray(IMAGENET_EIGVAL), np.asarray(IMAGENET_EIGVEC)
    expected = eigvec @ np.diag((0.1 * eigval) ** 2) @ eigvec.T
    got = np.cov(colour.double().numpy(), rowvar=False)
    np.testing.assert_allclose(got, expected, atol=0.05 * expected.max())
    coefficients = colour.double().numpy() @ eigvec  # along p1, p2, p3: independent, std 0.1 lambda
    np.testing.assert_allclose(coefficients.std(axis=0), 0.1 * eigval, rtol=0.05)
    assert abs(np.corrcoef(coefficients, rowvar=False)[0, 1]) < 0.05
    assert abs(colour.double().mean(dim=0)).max() < 3 * 0.1 * eigval[0] / np.sqrt(n)


@pytest.mark.parametrize("device", DEVICES)
def test_standard_normalisation_is_per_channel(device):
    size = 6
    images = torch.randint(0, 256, (8, size, size, 3), dtype=torch.uint8)
    mean = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)
    views = PaperViews(stats(size, mean), size, normalize="standard", pca_noise=False)
    out = views(images.to(device), "center").cpu()
    channel_mean = torch.tensor(mean.mean(axis=(0, 1))).view(1, 3, 1, 1)
    expected = (images.permute(0, 3, 1, 2).float() - channel_mean) / 50.0
    torch.testing.assert_close(out, expected)


@on_cuda
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_cuda_batch_stage_equals_the_cpu_one(normalize):
    """The same images and seed give the same crops, mirrors, colour noise and centring on
    CUDA as on the CPU, bit for bit: offsets, mirrors and colours are drawn on the host, and
    the device only subtracts, scales and adds."""
    size, crop = 40, 33
    images = torch.randint(0, 256, (256, size, size, 3), dtype=torch.uint8)
    mean = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)
    for pca_noise in (False, True):
        for view in ("random", *VIEWS):
            out = {}
            for device in ("cpu", "cuda"):
                torch.manual_seed(0)
                views = PaperViews(stats(size, mean), crop, normalize, pca_noise=pca_noise)
                out[device] = views(images.to(device), view)
            assert out["cuda"].is_cuda
            assert torch.equal(out["cuda"].cpu(), out["cpu"]), (view, pca_noise)


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    for c in range(3):
        for i in range(6):
            write_image(root / "train" / f"class{c}" / f"{i}.JPEG", ["rgb", "gray", "cmyk"][i % 3],
                        (80 + 7 * i, 90 - 5 * c), seed=10 * c + i)
        write_image(root / "val" / f"class{c}" / "v.JPEG", "png", (100, 77), seed=99 + c)
    return root


def training_batch(compose_cfg, folder, *overrides, device="cpu"):
    """The datamodule of the composed config, in a real Trainer's training state, and what
    it makes on ``device`` of one batch of identical images equal to the mean (so only colour
    noise is left) and of one batch of coded images."""
    cfg = compose_cfg("data=folder", f"data.root={folder}", "data.num_classes=3",
                      "data.image_size=20", "data.crop_size=16", "data.num_workers=0", *overrides)
    datamodule = build_datamodule(cfg.data)
    datamodule.setup("fit")
    datamodule.trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    datamodule.trainer.training = True
    mean = torch.as_tensor(datamodule.stats.mean_image).round().to(torch.uint8)
    batch = (mean.repeat(16, 1, 1, 1).to(device), torch.zeros(16, dtype=torch.long, device=device))
    images = coded(16, 20).to(device)
    return datamodule, lambda: datamodule.on_after_batch_transfer(batch, 0)[0].cpu(), \
        lambda: datamodule.on_after_batch_transfer((images, batch[1]), 0)[0].cpu()


@pytest.mark.parametrize("device", DEVICES)
def test_full_pipeline_crops_mirrors_and_adds_colour(compose_cfg, jpeg_folder, device):
    dm, at_mean, at_coded = training_batch(compose_cfg, jpeg_folder, device=device)
    assert dm.stats.source == "published ImageNet constants"  # image files: the fallback
    noise = at_mean()  # the colour noise, plus the mean image's rounding to uint8 (< 0.5)
    assert noise.std(dim=(2, 3)).max() < 1e-4  # one colour per image
    assert noise.mean(dim=(2, 3)).std(dim=0).min() > 1  # a different colour for every image
    assert not torch.equal(at_coded(), at_coded())  # random crops, drawn per use


def test_no_pca_switches_colour_noise_off_and_keeps_crops(compose_cfg, jpeg_folder):
    dm, at_mean, at_coded = training_batch(compose_cfg, jpeg_folder, "+ablation=no_pca")
    assert dm.hparams.pca_noise is False and dm.views.colour_noise is None
    assert at_mean().abs().max() <= 0.5  # only the rounding of the mean image is left
    assert not torch.equal(at_coded(), at_coded())  # crops and mirrors still random


def test_no_augment_is_the_centre_crop_without_mirrors_or_colour(compose_cfg, jpeg_folder):
    dm, at_mean, at_coded = training_batch(compose_cfg, jpeg_folder, "+ablation=no_augment")
    assert at_mean().abs().max() <= 0.5
    first = at_coded()
    assert torch.equal(first, at_coded())
    mean = torch.as_tensor(dm.stats.mean_image)[2:18, 2:18]
    expected = coded(16, 20)[:, 2:18, 2:18].float() - mean
    torch.testing.assert_close(first, expected.permute(0, 3, 1, 2))


def test_trainer_reports_centre_and_ten_crop_and_skips_a_bad_file(compose_cfg, jpeg_folder, tmp_path):
    bad = write_image(jpeg_folder / "train" / "class1" / "zz.JPEG", "truncated", (120, 90))
    overrides = ("experiment=tiny", "data=folder",
                 f"data.root={jpeg_folder}", "data.num_classes=3", "data.batch_size=19",  # one batch: every file
                 "data.val_views=[center,tencrop]", "trainer.max_epochs=1")
    try:
        with pytest.raises(DecodeError, match="class1/zz.JPEG"):  # from a worker process
            train(compose_cfg(*overrides, "data.num_workers=1"))
        with pytest.warns(UserWarning, match="1 unreadable images were left out"):
            train(compose_cfg(*overrides, "data.on_error=skip"))
    finally:
        bad.unlink()
    run = tmp_path / "run"
    assert json.loads((run / "results.json").read_text())["status"] == "completed"
    assert f"{bad}" in (run / "skipped_images.txt").read_text()
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/top1_err", "val_tencrop/top1_err", "val_tencrop/loss"} <= set(header)


def test_the_plateau_rule_can_monitor_the_held_out_training_images(compose_cfg, jpeg_folder, tmp_path):
    """Prepared with --held-out-to-val (4 training images a class kept, 2 scored as validation
    after the 3 official ones): the held-out images log as val_held_out/..., a stream the report
    does not table, and the plateau rule runs on it (Lightning stops a run whose monitor is
    missing); val/ and val_official/ are logged as before."""
    prepared = tmp_path / "prepared"
    prepare_main([str(jpeg_folder), str(prepared), "--image-size", "76", "--workers", "1",
                  "--train-per-class", "4", "--held-out-to-val"])
    train(compose_cfg("experiment=tiny", "data=folder", f"data.root={prepared}", "data.num_classes=3",
                      "data.num_workers=0", "data.batch_size=6", "trainer.max_epochs=1",
                      "optim.scheduler.monitor=val_held_out/top1_err"))
    run = tmp_path / "run"
    assert json.loads((run / "results.json").read_text())["status"] == "completed"
    (row,) = [r for r in read_metrics(run) if r.get("val_held_out/top1_err")]
    assert row["val/top1_err"] and row["val_official/top1_err"]
    assert float(row["val_held_out/top1_err"]) * 6 == pytest.approx(round(float(row["val_held_out/top1_err"]) * 6))  # of 6


def test_centre_and_ten_crop_from_one_pass_score_as_each_alone(compose_cfg, jpeg_folder):
    """With both views the val set is read and run once; each view's numbers are the ones it
    gives alone, logged under its own name."""
    logged, seen = {}, {}
    for views in ("[center]", "[tencrop]", "[center,tencrop]"):
        cfg = compose_cfg("experiment=tiny", "data=folder", f"data.root={jpeg_folder}",
                          "data.num_classes=3", "data.num_workers=0", f"data.val_views={views}", "data.train_eval_images=0")
        torch.manual_seed(0)  # the same weights each time
        module = build_module(cfg)
        seen[views] = []
        module.net.register_forward_pre_hook(lambda _, args, n=seen[views]: n.append(len(args[0])))
        trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
        metrics = trainer.validate(module, build_datamodule(cfg.data), verbose=False)[0]
        logged[views] = {k: v for k, v in metrics.items() if k.startswith("val")}  # not the probes
    assert {v: sum(n) for v, n in seen.items()} == {"[center]": 3, "[tencrop]": 30, "[center,tencrop]": 30}
    both = logged["[center,tencrop]"]
    assert set(both) == {f"{p}/{m}" for p in ("val", "val_tencrop") for m in ("loss", "top1_err", "top3_err")}
    for name, value in logged["[center]"].items():
        assert both[name] == pytest.approx(value, rel=1e-6)
    for name, value in logged["[tencrop]"].items():
        assert both[name.replace("val/", "val_tencrop/")] == pytest.approx(value, rel=1e-6)
    assert both["val/loss"] != pytest.approx(both["val_tencrop/loss"], rel=1e-6)
