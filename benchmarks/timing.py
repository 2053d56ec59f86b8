"""Shared by the benchmark scripts: interleaved timing, the machine's description, JSON out.

Other processes share the CPU, so each repeat runs every contender once, in alternating
order (A B, B A, ...), and figures are medians: a burst of load hits all contenders alike.
"""
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from alexnet_lit.results import portable


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(contenders: dict, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument callable, ``repeats`` times, after one warm-up."""
    for run in contenders.values():
        run()
    synchronize(device)
    seconds = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            start = time.perf_counter()
            contenders[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").open()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = dict(cpu=cpu, cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(),
                platform=platform.platform(), load_average=os.getloadavg())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def save(result: dict, path: Path, echo: bool = True, folders: dict[str, str | Path] | None = None) -> None:
    """Write ``result`` to ``path`` as JSON, its machine paths made :func:`portable` (the
    interpreter, and each of ``folders`` by its NAME); print it too where ``echo`` (scripts
    that print their own summary as they go pass False)."""
    text = json.dumps(portable(result, folders or {}), indent=2)
    if echo:
        print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    if echo:
        print(f"wrote {path}")
