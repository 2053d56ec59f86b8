"""Whether a run learned, from what its training measured (alexnet_lit.inspect.probes): the
verdict and the collapse rule behind results.json's ``learning``. No torch: reports state the
rule with its numbers."""
import math

from alexnet_lit.results import Learning

EXPLODED = 3.0  # a training loss above this many times chance's, ln(classes), is a blow-up
CHANCE_Z = 3.0  # final val accuracy within this many binomial sds of 1/classes is chance
# The collapse rule, fixed before the table's sweep (ablations/table/README.md): a run
# collapsed where a ReLU layer has more than DEAD_LAYER of its units silent on every image the
# last validation scored, or where its training loss stayed above AT_CHANCE_LOSS x ln(classes)
# for more than AT_CHANCE_STEPS of the steps of its second half (a short run that starts at
# chance and then learns has not collapsed).
DEAD_LAYER, AT_CHANCE_LOSS, AT_CHANCE_STEPS = 0.9, 0.95, 0.5


def collapse_reasons(watch: dict, dead_units: dict[str, float]) -> list[str]:
    """Why a run counts as collapsed under the rule above (empty: it did not); ``watch`` is a
    LossWatch's state (alexnet_lit.inspect.probes)."""
    reasons = [f"{layer}: {dead:.0%} of its units dead" for layer, dead in dead_units.items() if dead > DEAD_LAYER]
    if watch.get("steps") and watch["at_chance"] > AT_CHANCE_STEPS * watch["steps"]:
        reasons.append(f"training loss at chance for {watch['at_chance'] / watch['steps']:.0%} of its second half's steps")
    return reasons


def learning_verdict(classes: int, watch: dict, val_top1_err: float | None, val_images: int,
                     dead_units: dict[str, float]) -> Learning:
    """Whether a run learned: ``at chance`` where the last validation's top-1 accuracy is
    within CHANCE_Z binomial standard deviations of 1/classes (``exploded and at chance``
    where a training loss also passed EXPLODED x ln(classes)), ``collapsed`` where it is not
    at chance but :func:`collapse_reasons` finds a layer mostly dead or a loss at chance for
    most of training (``collapsed``: true, with the reasons, for those at chance too),
    ``learns after a loss spike`` where the loss passed EXPLODED and the run still learned,
    else ``learns``."""
    chance_loss, chance_acc = math.log(classes), 1 / classes
    exploded = watch.get("largest", 0) > EXPLODED * chance_loss
    at_chance = None
    if val_top1_err is not None and val_images:
        sd = math.sqrt(chance_acc * (1 - chance_acc) / val_images)
        at_chance = (1 - val_top1_err) - chance_acc < CHANCE_Z * sd
    reasons = collapse_reasons(watch, dead_units)
    if at_chance:
        verdict = "exploded and at chance" if exploded else "at chance"
    elif at_chance is False:
        verdict = "collapsed" if reasons else "learns after a loss spike" if exploded else "learns"
    else:
        verdict = "exploded" if exploded else "unknown"
    return Learning(verdict, collapsed=bool(at_chance) or bool(reasons), collapse_reasons=reasons,
                    chance_loss=round(chance_loss, 4), first_train_loss=watch.get("first"),
                    max_train_loss=watch.get("largest"), max_train_loss_step=watch.get("step"),
                    at_chance_steps=watch.get("at_chance"), steps=watch.get("steps"))
