"""The geometry of a layer table (conf/model/alexnet.yaml; alexnet_lit.model builds the network
from it), from the table alone and without torch, so that a report reads it off a run's config:
each row's map sizes (:func:`map_sizes`) and each pool stage's coverage (:func:`pool_coverage`)."""
import math
from collections import OrderedDict

POOL_ROWS = ("maxpool", "avgpool")  # the words of a pooling row
POOL = {"kernel": 3, "stride": 2, "ceil_mode": False}  # Section 3.4: z=3, s=2


def pooled(size: int, pool: dict) -> tuple[int, int]:
    """A pool's output size over ``size`` input rows (as torch computes it, no padding) and how
    many of those rows its windows read: ``floor`` rounding leaves the last rows unread where
    the windows do not fit, ``ceil_mode`` adds a window that reads them."""
    kernel, stride = pool["kernel"], pool["stride"]
    rounding = math.ceil if pool["ceil_mode"] else math.floor
    out = rounding((size - kernel) / stride) + 1
    if pool["ceil_mode"] and (out - 1) * stride >= size:  # a window must start inside the input
        out -= 1
    return out, max(0, min(size, (out - 1) * stride + kernel))


def map_sizes(features: dict, input_size: int, pool: dict | None = None) -> dict[str, tuple[int, int, int]]:
    """Each row's (input size, output size, input rows it reads) of a square ``input_size`` input,
    from the layer table alone; a row that leaves no output is refused, naming it."""
    pool, sizes, size = {**POOL, **(pool or {})}, OrderedDict(), input_size
    for name, row in features.items():
        if row is None:
            continue
        if isinstance(row, str) and row in POOL_ROWS:
            out, seen = pooled(size, pool)
        elif row in ("lrn", "rnorm"):
            out, seen = size, size
        elif isinstance(row, str):
            raise ValueError(f"model.features.{name}={row!r}: expected a convolution row or one of "
                             f"'lrn', 'rnorm', {', '.join(map(repr, POOL_ROWS))}")
        else:
            out, seen = (size + 2 * row["pad"] - row["kernel"]) // row["stride"] + 1, size
        if out < 1:
            raise ValueError(f"model.features.{name}: no output left from a "
                             f"{input_size}x{input_size} input (model.input_size={input_size})")
        sizes[name], size = (size, out, seen), out
    return sizes


def pool_coverage(features: dict, input_size: int, pool: dict | None = None) -> dict[str, tuple[int, int]]:
    """Per pool stage (Section 3.4): (positions its windows read, positions there), rows times
    columns. 2x2 windows with stride 2 on an odd size leave the last row and column unread."""
    sizes = map_sizes(features, input_size, pool)
    return {name: (sizes[name][2] ** 2, sizes[name][0] ** 2) for name in sizes
            if isinstance(features[name], str) and features[name] in POOL_ROWS}
