"""benchmarks/litdata_random_access.py run small: every reader reads the images the shards hold,
and a chunk cut short under LitData's memory maps kills the reader, under its file reads is an error."""
import json
import sys

import pytest

from alexnet_lit.data.streaming import NEEDS
from conftest import REPO

pytest.importorskip("litdata", reason=NEEDS)
sys.path.insert(0, str(REPO / "benchmarks"))
from litdata_random_access import main  # noqa: E402

READERS = ["ours_shards", "litdata_file_reads", "litdata_maps", "litdata_maps_per_item"]


@pytest.mark.slow
def test_the_benchmark_reads_the_same_bytes_every_way_and_records_each_reader(tmp_path):
    out = tmp_path / "result.json"
    main(["--images", "40", "--reads", "8", "--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["same_bytes"] is True and result["images"]["count"] == 40
    assert list(result["images_per_cpu_s"]) == READERS and all(v > 0 for v in result["images_per_cpu_s"].values())
    assert result["relative_to_ours"]["ours_shards"] == 1 and len(result["cpu_seconds"]["litdata_maps"]) == 1
    # docs/speed.md's reason to keep the shards: mapped, a chunk cut short kills the reader
    cut = result["chunk_cut_short"]
    assert cut["litdata_maps"]["signal"] == "SIGBUS"
    assert cut["litdata_file_reads"]["exit_status"] == 1 and cut["litdata_file_reads"]["error"]
