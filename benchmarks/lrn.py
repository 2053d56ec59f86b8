"""LRN forward+backward: this project's layer against ``torch.nn.LocalResponseNorm``.

    python benchmarks/lrn.py [--device cpu|cuda] [--dtype float32|bfloat16] [--shape 64 96 55 55]
        [--repeats 15] [--reuse-host-memory]

Both compute the same layer (``alpha_over_n=True`` is nn.LocalResponseNorm's convention;
the paper's convention costs the same) on norm1's input shape at batch 64. Checks that
outputs and input gradients agree with nn.LocalResponseNorm in float32 to 1e-6, i.e.
|ours - torch| <= 1e-6 * (1 + |torch|) everywhere (bfloat16 inputs: to 2^-7, one bfloat16
unit in the last place), then times both on the same inputs, interleaved, in NCHW and channels_last.
Prints and writes JSON (default ``benchmarks/results/lrn_<device>[_<dtype>][_reuse].json``);
exits non-zero on disagreement. ``--reuse-host-memory`` first applies
speed.reuse_host_memory, as train.py does.
"""
import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from timing import interleaved, machine, median, save

from alexnet_lit.lrn import LRN
from alexnet_lit.speed import reuse_host_memory

TOLERANCE = {torch.float32: 1e-6, torch.bfloat16: 2.0 ** -7}  # bfloat16: one unit in the last place
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def agreement(ours: torch.Tensor, ref: torch.Tensor, tolerance: float) -> dict:
    """The largest difference, and the largest as a fraction of what torch.allclose allows
    (tolerance * (1 + |ref|)): they agree when that fraction is at most 1."""
    ours, ref = ours.float(), ref.float()
    diff = (ours - ref).abs()
    return dict(max_abs=diff.max().item(), max_abs_ref=ref.abs().max().item(),
                worst_over_tolerance=(diff / (tolerance * (1 + ref.abs()))).max().item())


def measure(device: torch.device, shape: list[int], repeats: int, dtype: torch.dtype = torch.float32) -> dict:
    """Agreement with nn.LocalResponseNorm (float32 reference), then fwd+bwd and fwd timings."""
    size, alpha, beta, k = 5, 1e-4, 0.75, 2.0
    ours = LRN(size, alpha, beta, k, alpha_over_n=True)
    torch_lrn = nn.LocalResponseNorm(size, alpha, beta, k)
    torch.manual_seed(0)
    # ReLU outputs on the scale of conv1's with raw-pixel inputs (Section 4.1: mean only).
    x = torch.relu(torch.randn(*shape, device=device) * 30).to(dtype).requires_grad_()
    grad = torch.randn_like(x)

    def fwd_bwd(layer, inputs):
        def run():
            inputs.grad = None
            layer(inputs).backward(grad)
        return run

    def fwd(layer, inputs):
        def run():
            with torch.no_grad():
                layer(inputs)
        return run

    y_ours = ours(x)
    y_ours.backward(grad)
    g_ours, x.grad = x.grad, None
    x32 = x.detach().float().requires_grad_()
    y_ref = torch_lrn(x32)
    y_ref.backward(grad.float())
    agree = dict(output=agreement(y_ours, y_ref, TOLERANCE[dtype]),
                 input_grad=agreement(g_ours, x32.grad, TOLERANCE[dtype]))
    ok = all(a["worst_over_tolerance"] <= 1 for a in agree.values())
    print(f"agreement with nn.LocalResponseNorm (ok={ok}):", agree)
    del y_ours, y_ref, g_ours, x32

    rows = {}
    layouts = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
    for layout, memory_format in layouts.items():
        xs = x.detach().to(memory_format=memory_format).requires_grad_()
        seconds = interleaved({
            "torch_fwd_bwd": fwd_bwd(torch_lrn, xs), "ours_fwd_bwd": fwd_bwd(ours, xs),
            "torch_fwd": fwd(torch_lrn, xs), "ours_fwd": fwd(ours, xs)}, repeats, device)
        ms = {name: 1e3 * median(s) for name, s in seconds.items()}
        rows[layout] = dict(
            median_ms=ms, speedup_fwd_bwd=ms["torch_fwd_bwd"] / ms["ours_fwd_bwd"],
            speedup_fwd=ms["torch_fwd"] / ms["ours_fwd"],
            all_ms={name: [round(1e3 * t, 2) for t in s] for name, s in seconds.items()})
        print(f"{layout}: fwd+bwd torch {ms['torch_fwd_bwd']:.1f} ms, ours {ms['ours_fwd_bwd']:.1f} "
              f"ms -> {rows[layout]['speedup_fwd_bwd']:.2f}x; fwd {rows[layout]['speedup_fwd']:.2f}x")
    return dict(shape=shape, dtype=str(dtype).removeprefix("torch."),
                layer=dict(size=size, alpha=alpha, beta=beta, k=k, alpha_over_n=True),
                tolerance=TOLERANCE[dtype], agreement=agree, agree=ok, repeats=repeats, results=rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--shape", type=int, nargs=4, default=[64, 96, 55, 55])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--reuse-host-memory", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    reused = args.reuse_host_memory and reuse_host_memory()
    suffix = f"{'_' + args.dtype if args.dtype != 'float32' else ''}{'_reuse' * reused}"
    out = args.out or Path(__file__).parent / "results" / f"lrn_{device.type}{suffix}.json"
    result = measure(device, args.shape, args.repeats, DTYPES[args.dtype])
    save(dict(benchmark="lrn", command=" ".join(["python", *sys.argv]), **result,
              reuse_host_memory=reused, machine=machine(device)), out)
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
