"""AlexNet (Krizhevsky, Sutskever, Hinton 2012) with PyTorch Lightning and Hydra. From Python:
``alexnet_lit.alexnet(...)``, ``alexnet_lit.alexnet_torchvision(...)`` and
``alexnet_lit.load(run)`` (alexnet_lit.api; imported on first use, so that ``import
alexnet_lit.<module>`` stays as light as that module)."""
__all__ = ["alexnet", "alexnet_torchvision", "load", "Trained"]


def __getattr__(name: str):
    if name in __all__:
        from alexnet_lit import api
        return getattr(api, name)
    raise AttributeError(f"module 'alexnet_lit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The API as well as what is loaded (tab completion, ``dir(alexnet_lit)``)."""
    return sorted({*globals(), *__all__})
