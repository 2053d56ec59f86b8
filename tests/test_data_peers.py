"""benchmarks/data_peers.py run small on real Imagenette images, for the project's two formats and
a peer of each kind (a library's own format converted to, one reading the original files, one
that may not be installed): every peer asked for has a row, measured or with the error that
stopped it, and each figure follows from what was measured (the figures themselves are
docs/speed.md's, not checked here)."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, extracted

sys.path.insert(0, str(REPO / "benchmarks"))
from data_peers import PEERS  # noqa: E402

IMAGES, BATCH, BATCHES = 48, 16, 2
ASKED = ["ours_raw", "ours_jpeg", "torchvision_decode_jpeg", "litdata_jpeg", "ffcv_raw"]


@pytest.mark.slow
def test_every_peer_has_a_row_and_its_figures_follow_from_its_measurements(tmp_path, shared_cache):
    source = extracted("imagenette2_224.tar", shared_cache) / "imagenette2_224"
    out = tmp_path / "peers.json"
    done = subprocess.run([sys.executable, "benchmarks/data_peers.py", "--source", str(source), "--images", str(IMAGES),
                           "--batch-size", str(BATCH), "--warmup", "1", "--batches", str(BATCHES), "--workers", "1",
                           "--exact-images", "4", "--repeats", "1", "--peers", *ASKED, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    rows = record["peers"]
    assert set(ASKED) <= set(PEERS) and list(rows) == ASKED
    for name, row in rows.items():
        assert row["status"] in ("measured", "failed"), name
        if row["status"] == "failed":
            assert row["reason"].strip(), name  # the error line, never an empty reason
            continue
        assert list(row["loaders"]) == ["1"], name  # --workers 1
        for workers, loader in row["loaders"].items():
            assert loader["shape"] in ([BATCH, 227, 227, 3], [BATCH, 3, 227, 227]) and loader["dtype"] == "torch.uint8"
            assert loader["images_per_s"] == pytest.approx(BATCHES * BATCH / loader["seconds"])
            if loader["cpu_seconds"]:  # CPU time comes in 10 ms ticks: at this size it may read 0
                assert loader["images_per_cpu_s"] == pytest.approx(BATCHES * BATCH / loader["cpu_seconds"])
            assert loader["main_mib"]["peak_rss"] >= loader["main_mib"]["uss"] > 0
        if "convert" in row:
            assert row["bytes_per_image"] == pytest.approx(row["convert"]["bytes"] / IMAGES)
        exactness = row["exactness"]
        assert (exactness["max_abs_diff"] == 0) == (exactness["psnr_db"] is None), name
    for name in ("ours_raw", "ours_jpeg", "torchvision_decode_jpeg", "litdata_jpeg"):
        assert rows[name]["status"] == "measured", rows[name].get("reason")  # installed wherever the suite runs
    assert rows["ours_raw"]["exactness"]["max_abs_diff"] == 0  # the reference's pixels, stored
    assert rows["ours_raw"]["bytes_per_image"] > 256 * 256 * 3 > rows["ours_jpeg"]["bytes_per_image"]
    assert rows["ours_jpeg"]["exactness"]["psnr_db"] > 35 and rows["litdata_jpeg"]["exactness"]["psnr_db"] > 35
    stage = record["batch_stage"]["images_per_s_per_core"]
    for name, cores in record["projection"]["cores"].items():
        best = max(m["images_per_cpu_s"] for m in rows[name]["loaders"].values() if m["images_per_cpu_s"])
        assert cores["loader"] == pytest.approx(40_000 / best)
        assert cores["loader_and_batch_stage_on_cpu"] == pytest.approx(40_000 / best + 40_000 / stage["from_227"])
