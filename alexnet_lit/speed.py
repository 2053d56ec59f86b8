"""The process-wide speed setting of conf/speed (the others go to the Trainer and the module)."""
import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>


def reuse_host_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process for the next tensor.

    PyTorch takes every CPU tensor from malloc, which serves blocks over 32 MiB (AlexNet's
    activations at batch 32 and up) with a fresh ``mmap`` and unmaps them when freed: every
    step faults in every page of every activation again. With ``mmap`` off and the heap
    never trimmed, a step reuses the last step's memory (docs/speed.md: 1.4x faster steps of
    the full network on CPU, about 10% more resident memory). Lasts for the process.
    Returns whether it took effect: not with another C library, where it changes nothing.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        log.warning("speed.reuse_host_memory=true needs glibc's malloc; ignored on this system")
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
