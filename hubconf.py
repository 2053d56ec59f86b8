"""torch.hub entry points (docs/python.md):

    torch.hub.load("path/to/clone", "alexnet", source="local", ablations=["no_lrn"], num_classes=10)
    torch.hub.load("OWNER/alexnet-lit", "alexnet", ablations=["no_lrn"], num_classes=10)

take the arguments of alexnet_lit.alexnet and alexnet_lit.alexnet_torchvision. Nothing is
downloaded but the repository: ``weights=`` names a local file.
"""
dependencies = ["torch", "torchvision", "lightning", "hydra", "omegaconf", "torchmetrics", "numpy", "PIL", "scipy", "matplotlib"]

from alexnet_lit.api import alexnet, alexnet_torchvision  # noqa: E402,F401
