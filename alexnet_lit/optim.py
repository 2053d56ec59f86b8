"""The paper's optimiser and learning-rate schedules (Section 5)."""
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR, ReduceLROnPlateau


class PaperSGD(Optimizer):
    """Section 5's update rule, weight decay on every parameter:

        v <- momentum * v - weight_decay * lr * w - lr * grad;   w <- w + v

    ``torch.optim.SGD`` keeps v in gradient units and multiplies by the *current* lr, so
    the two differ for a few steps after each learning-rate drop; with a constant lr they
    are the same.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 5e-4):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            velocity = [self.state[p].setdefault("velocity", torch.zeros_like(p)) for p in params]
            lr = group["lr"]
            torch._foreach_mul_(velocity, group["momentum"])
            torch._foreach_add_(velocity, params, alpha=-group["weight_decay"] * lr)
            torch._foreach_add_(velocity, [p.grad for p in params], alpha=-lr)
            torch._foreach_add_(params, velocity)
        return loss


def build_optimizer(params, rule: str, lr: float, momentum: float, weight_decay: float) -> Optimizer:
    """``rule``: ``paper`` (:class:`PaperSGD`) or ``torch`` (``torch.optim.SGD``)."""
    if rule == "paper":
        return PaperSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if rule == "torch":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optim.rule={rule!r}: expected 'paper' or 'torch'")


def build_scheduler(optimizer: Optimizer, name: str, factor: float = 0.1, patience: int = 2,
                    milestones: list[int] | None = None, monitor: str | None = None) -> dict | None:
    """``plateau``: divide lr by 1/factor when ``monitor`` stops improving (the paper's
    rule); ``multistep``: at fixed epochs; ``constant``: never (Figure 1's runs). Returns
    Lightning's scheduler dict, None for ``constant``."""
    if name == "constant":
        return None
    if name == "plateau":
        scheduler = ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)
        return dict(scheduler=scheduler, monitor=monitor, interval="epoch", strict=True)
    if name == "multistep":
        if not milestones:
            raise ValueError("optim.scheduler.milestones must list the epochs at which lr drops")
        return dict(scheduler=MultiStepLR(optimizer, list(milestones), gamma=factor), interval="epoch")
    raise ValueError(f"optim.scheduler.name={name!r}: expected 'plateau', 'multistep' or 'constant'")
