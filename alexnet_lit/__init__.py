"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) with PyTorch Lightning and Hydra. From Python:
``alexnet_lit.alexnet(...)``, ``alexnet_lit.alexnet_torchvision(...)`` (alexnet_lit.api) and
``alexnet_lit.load(run)``, a :class:`Trained` (alexnet_lit.trained); each imported on first
use, so that ``import alexnet_lit.<module>`` stays as light as that module."""
import importlib

_HOME = {"alexnet": "api", "alexnet_torchvision": "api", "load": "trained", "Trained": "trained"}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"alexnet_lit.{_HOME[name]}"), name)
    raise AttributeError(f"module 'alexnet_lit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The API as well as what is loaded (tab completion, ``dir(alexnet_lit)``)."""
    return sorted({*globals(), *__all__})
