"""The network against docs/paper.md: parameter count, shapes, LRN, towers, ablations, init."""
import math
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, InstantiationException
from hydra.utils import instantiate
from torch import nn

from alexnet_lit.lrn import LRN
from alexnet_lit.model import AlexNet
from alexnet_lit.build import CONFIG_DIR

ABLATIONS = sorted(p.stem for p in (Path(CONFIG_DIR) / "ablation").glob("*.yaml"))
PRESETS = [None, "tiny", "quickstart", "table_cpu"]  # None: the paper's network


@pytest.fixture
def build(compose_cfg):
    """Compose the real config (1000 classes, as ILSVRC) and build its network."""
    def _build(*overrides: str) -> tuple[AlexNet, object]:
        cfg = compose_cfg("data.num_classes=1000", *overrides)
        return instantiate(cfg.model), cfg
    return _build


def layers(net: AlexNet, kind: type) -> dict[str, nn.Module]:
    return {n: m for n, m in [*net.features.named_children(), *net.classifier.named_children()]
            if isinstance(m, kind)}


def test_default_model_has_the_papers_parameter_count(build):
    net, _ = build()
    assert sum(p.numel() for p in net.parameters()) == 60_965_224


@pytest.mark.parametrize("model", ["alexnet", "alexnet224"])
def test_per_layer_output_shapes(build, model):
    net, cfg = build(f"model={model}")
    size = {"alexnet": 227, "alexnet224": 224}[model]
    assert cfg.data.crop_size == size
    shapes = {}
    for name in ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]:
        getattr(net.features, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    for name in ["fc6", "fc7", "fc8"]:
        getattr(net.classifier, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    with torch.no_grad():
        net(torch.randn(1, 3, size, size))
    assert shapes == {
        "conv1": (96, 55, 55), "pool1": (96, 27, 27), "conv2": (256, 27, 27), "pool2": (256, 13, 13),
        "conv3": (384, 13, 13), "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6),
        "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}


def test_no_relu_or_softmax_after_fc8(build):
    net, _ = build()
    names = [n for n, _ in net.classifier.named_children()]
    assert names[-1] == "fc8" and isinstance(net.classifier[-1], nn.Linear)
    assert names == ["fc6", "act6", "drop6", "fc7", "act7", "drop7", "fc8"]


def test_too_small_an_input_is_refused_naming_the_layer(build):
    with pytest.raises(InstantiationException, match=r"model\.features\.pool5.*model\.input_size=40"):
        build("model.input_size=40")


def lrn_loop(a: torch.Tensor, n: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """Section 3.3's formula, term by term."""
    out = torch.empty_like(a)
    channels = a.shape[1]
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        total = sum(a[:, j] ** 2 for j in range(lo, hi + 1))
        out[:, i] = a[:, i] / (k + alpha * total) ** beta
    return out


def test_lrn_is_the_papers_formula_not_alpha_over_n(build):
    torch.manual_seed(0)
    a = torch.relu(torch.randn(3, 11, 5, 4, dtype=torch.float64) * 30)  # ReLU outputs, large
    ours = LRN(size=5, alpha=1e-4, beta=0.75, k=2.0)(a)
    assert torch.allclose(ours, lrn_loop(a, 5, 1e-4, 0.75, 2.0), atol=1e-6, rtol=0)
    assert not torch.allclose(ours, lrn_loop(a, 5, 1e-4 / 5, 0.75, 2.0), atol=1e-6, rtol=0)
    # (tests/test_lrn.py: every size and convention, nn.LocalResponseNorm, gradients)
    net, _ = build()
    norms = layers(net, LRN)
    assert list(norms) == ["norm1", "norm2"]
    assert all((m.size, m.alpha, m.beta, m.k, m.alpha_over_n) == (5, 1e-4, 0.75, 2.0, False)
               for m in norms.values())


def test_a_tower_does_not_see_the_other_towers_maps(build):
    net, _ = build()
    torch.manual_seed(0)
    x = torch.randn(1, 96, 27, 27)
    changed = x.clone()
    changed[:, 48:] = torch.randn(1, 48, 27, 27)  # tower 2's input maps
    with torch.no_grad():
        for conv, half in [(net.features.conv2, 128)]:
            before, after = conv(x), conv(changed)
            assert torch.equal(before[:, :half], after[:, :half])  # tower 1 untouched
            assert not torch.allclose(before[:, half:], after[:, half:])
        conv3_in = torch.randn(1, 256, 13, 13)
        conv3_changed = conv3_in.clone()
        conv3_changed[:, 128:] += 1
        a, b = net.features.conv3(conv3_in), net.features.conv3(conv3_changed)
        assert not torch.allclose(a[:, :192], b[:, :192])  # conv3 sees both towers
    assert {n: m.groups for n, m in layers(net, nn.Conv2d).items()} == {
        "conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}


def conv_table(net: AlexNet) -> dict[str, tuple[int, int, int]]:
    return {n: (m.in_channels, m.out_channels, m.groups) for n, m in layers(net, nn.Conv2d).items()}


PAPER_CONVS = {"conv1": (3, 96, 1), "conv2": (96, 256, 2), "conv3": (256, 384, 1),
               "conv4": (384, 384, 2), "conv5": (384, 256, 2)}


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_ablation_builds_the_model_it_claims(build, ablation):
    net, cfg = build(f"+ablation={ablation}")
    convs, fc6 = conv_table(net), net.classifier.fc6
    acts = [type(m) for m in [*net.features, *net.classifier] if isinstance(m, (nn.ReLU, nn.Tanh))]
    pools = layers(net, nn.MaxPool2d)
    drops = layers(net, nn.Dropout)
    expected_convs, expected_fc6_in = dict(PAPER_CONVS), 256 * 6 * 6
    if ablation == "tanh":
        assert acts == [nn.Tanh] * 7
    else:
        assert acts == [nn.ReLU] * (7 - (ablation.startswith("no_conv")))
    assert len(layers(net, LRN)) == {"no_lrn": 0, "no_conv2": 1}.get(ablation, 2)
    assert {(p.kernel_size, p.stride, p.ceil_mode) for p in pools.values()} == {
        "no_overlap": {(2, 2, False)}, "no_overlap_covering": {(2, 2, True)}}.get(ablation, {(3, 2, False)})
    assert list(pools) == ["pool1", "pool2", "pool5"]
    assert {d.p for d in drops.values()} == ({0.0} if ablation == "no_dropout" else {0.5})
    if ablation == "one_tower":
        expected_convs = {"conv1": (3, 48, 1), "conv2": (48, 128, 1), "conv3": (128, 192, 1),
                          "conv4": (192, 192, 1), "conv5": (192, 256, 1)}
    if ablation == "no_conv2":
        del expected_convs["conv2"]
        expected_convs["conv3"] = (96, 384, 1)
    if ablation == "no_conv3":
        del expected_convs["conv3"]
        expected_convs["conv4"] = (256, 384, 2)
    if ablation == "no_conv4":
        del expected_convs["conv4"]
        expected_convs["conv5"] = (384, 256, 2)
    if ablation == "no_conv5":
        del expected_convs["conv5"]
        expected_fc6_in = 384 * 6 * 6
        assert list(net.features.named_children())[-1][0] == "pool5"
    if ablation == "no_overlap_covering":  # 55 -> 28 -> 14 -> 7: one row and column more a pool
        expected_fc6_in = 256 * 7 * 7
    assert convs == expected_convs
    assert (fc6.in_features, fc6.out_features, net.classifier.fc7.out_features) == (expected_fc6_in, 4096, 4096)
    assert cfg.data.pca_noise is (ablation != "no_pca")
    assert cfg.data.augment is (ablation != "no_augment")
    assert cfg.optim.weight_decay == (0.0 if ablation == "no_weight_decay" else 0.0005)
    with torch.no_grad():
        assert net(torch.randn(2, 3, 227, 227)).shape == (2, 1000)


def relative_convs(base: AlexNet, ablation: str) -> dict[str, tuple[int, int, int]]:
    """What ``ablation`` claims to make of ``base``'s convolutions: (in, out, groups) each."""
    rows = {n: (m.out_channels, m.groups) for n, m in layers(base, nn.Conv2d).items()}
    if ablation.startswith("no_conv"):
        del rows[ablation[3:]]
    if ablation == "one_tower":  # half the kernels in conv1..conv4, conv5 kept, one tower
        rows = {n: (out if n == "conv5" else out // 2, 1) for n, (out, _) in rows.items()}
    table, channels = {}, 3
    for name, (out, groups) in rows.items():
        table[name], channels = (channels, out, groups), out
    return table


def expected_parameters(net: AlexNet, convs: dict[str, tuple[int, int, int]]) -> int:
    """The parameter count of ``net``'s layout with these convolutions, from their shapes."""
    total = 0
    for name, (cin, cout, groups) in convs.items():
        kh, kw = getattr(net.features, name).kernel_size
        total += cin // groups * kh * kw * cout + cout
    return total + sum(m.weight.numel() + m.bias.numel() for m in layers(net, nn.Linear).values())


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablations_change_only_their_component_of_every_preset(compose_cfg, preset, ablation):
    """An ablation is relative to the network it modifies (issue 12: ``one_tower`` once set
    absolute widths, and on the tiny preset compared a 10x larger network)."""
    experiment = [f"experiment={preset}"] if preset else []
    base_cfg = compose_cfg(*experiment, "data.num_classes=10", run="base")
    cfg = compose_cfg(*experiment, "data.num_classes=10", f"+ablation={ablation}", run="ablated")
    base, net = instantiate(base_cfg.model), instantiate(cfg.model)
    convs = relative_convs(base, ablation)
    assert conv_table(net) == convs
    assert sum(p.numel() for p in net.parameters()) == expected_parameters(net, convs)
    if ablation in ("none", "tanh", "no_lrn", "no_dropout", "no_pca", "no_augment", "no_weight_decay"):
        assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in base.parameters())
    assert [fc.out_features for fc in layers(net, nn.Linear).values()] == [
        fc.out_features for fc in layers(base, nn.Linear).values()]
    assert len(layers(net, LRN)) == {"no_lrn": 0, "no_conv2": 1}.get(ablation, len(layers(base, LRN)))
    assert all(isinstance(m, nn.Tanh) == (ablation == "tanh")
               for m in layers(net, (nn.ReLU, nn.Tanh)).values())
    changed = {  # the one thing outside the network each of these switches
        "no_pca": ("data", "pca_noise", False), "no_augment": ("data", "augment", False),
        "no_weight_decay": ("optim", "weight_decay", 0.0), "no_dropout": ("model", "dropout", 0.0),
        "no_overlap": ("model", "pool", {"kernel": 2, "stride": 2, "ceil_mode": False}),
        "no_overlap_covering": ("model", "pool", {"kernel": 2, "stride": 2, "ceil_mode": True})}
    for group, key in {(group, key) for group, key, _ in changed.values()}:
        own = changed.get(ablation)
        expected = own[2] if own and own[:2] == (group, key) else base_cfg[group][key]
        assert cfg[group][key] == expected, (ablation, group, key)
    assert (cfg.model.init, cfg.data.normalize, cfg.optim.lr) == (
        base_cfg.model.init, base_cfg.data.normalize, base_cfg.optim.lr)
    with torch.no_grad():
        size = cfg.model.input_size
        assert net(torch.randn(2, 3, size, size)).shape == (2, 10)
    # Common random numbers: every layer the ablation leaves its shape starts from the same
    # draws as in `none` of the seed (tanh's biases are 0, not the ReLUs' positive ones, and
    # kaiming scales tanh's weights by another gain: the same draws times a constant).
    base_weights, weights = base.state_dict(), net.state_dict()
    same = [k for k, v in weights.items() if k in base_weights and base_weights[k].shape == v.shape
            and not (ablation == "tanh" and k.endswith("bias"))]
    assert "classifier.fc8.weight" in same
    for key in same:
        w, b = weights[key], base_weights[key]
        if ablation == "tanh":
            torch.testing.assert_close(w, b * (w.norm() / b.norm()), rtol=1e-5, atol=1e-8, msg=key)
        else:
            assert torch.equal(w, b), key


def positions_read(net: AlexNet) -> dict[str, tuple[int, int]]:
    """Per max-pool of ``net`` on an input of its size: (positions of the pool's input that some
    output depends on, positions there), found by raising each position alone to +inf and
    seeing whether the pool's output changes, on the real modules."""
    inputs, size = {}, net.input_size
    hooks = [m.register_forward_pre_hook(lambda m, args, n=n: inputs.setdefault(n, args[0]))
             for n, m in layers(net, nn.MaxPool2d).items()]
    with torch.no_grad():
        net(torch.randn(1, 3, size, size))
        for hook in hooks:
            hook.remove()
        read = {}
        for name, x in inputs.items():
            pool, x = getattr(net.features, name), x[:, :1]
            plain, (h, w) = pool(x), x.shape[-2:]
            seen = 0
            for i in range(h):
                for j in range(w):
                    raised = x.clone()
                    raised[..., i, j] = math.inf
                    seen += not torch.equal(pool(raised), plain)
            read[name] = (seen, h * w)
    return read


def test_the_pooling_control_reads_every_position_where_no_overlap_does_not(build):
    """At the table's 67-pixel crops no_overlap's 2x2/2 pools leave the last row and column
    of each odd map unread (pool5 reads 4 of conv5's 9 positions); the control's pools read
    all, and the network reports the same coverage it has (net.coverage, read by the report)."""
    for ablation, whole in (("none", True), ("no_overlap", False), ("no_overlap_covering", True)):
        net, _ = build("experiment=table_cpu", f"+ablation={ablation}")
        read = positions_read(net)
        assert read == net.coverage, ablation
        assert all(seen == there for seen, there in read.values()) is whole, (ablation, read)
    net, _ = build("experiment=table_cpu", "+ablation=no_overlap")
    assert net.coverage == {"pool1": (196, 225), "pool2": (36, 49), "pool5": (4, 9)}


def test_each_layers_initial_weights_depend_on_the_seed_and_its_name_only(compose_cfg):
    """Removing conv3 shifts no other layer's draws (they once came from one stream, so 6 of
    no_conv3's 13 same-shape tensors started elsewhere), and another seed draws other weights."""
    nets = {(ablation, seed): instantiate(compose_cfg("experiment=tiny", f"+ablation={ablation}", f"seed={seed}",
                                                      run=f"{ablation}{seed}").model)
            for ablation in ("none", "no_conv3") for seed in (3, 4)}
    conv1 = {key: net.features.conv1.weight for key, net in nets.items()}
    assert torch.equal(conv1["none", 3], conv1["no_conv3", 3]) and torch.equal(conv1["none", 4], conv1["no_conv3", 4])
    assert not torch.equal(conv1["none", 3], conv1["none", 4])
    assert torch.equal(nets["none", 3].features.conv5.weight, nets["no_conv3", 3].features.conv5.weight)
    # two layers of one shape in one net draw differently (the name is in the seed)
    assert not torch.equal(nets["none", 3].features.conv3.weight[:, :32], nets["none", 3].features.conv4.weight[:, :32])


def test_ablations_compose_together(build):
    net, _ = build("+ablation=[no_lrn,tanh,no_conv4]")
    assert not layers(net, LRN) and not layers(net, nn.ReLU) and "conv4" not in layers(net, nn.Conv2d)


def test_unknown_ablation_lists_the_valid_ones(build):
    with pytest.raises(ConfigCompositionException) as error:
        build("+ablation=no_such_thing")
    assert "no_such_thing" in str(error.value) and "no_lrn" in str(error.value)


def test_paper_initialisation(build):
    torch.manual_seed(0)
    net, _ = build("model.init=paper")
    for name, layer in net.learned_layers():
        assert layer.weight.mean().abs() < 1e-3
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05), name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == expected_bias), name


def test_caffe_initialisation(build):
    net, _ = build("model.init=caffe")
    for name, layer in net.learned_layers():
        std = 0.005 if name in ("fc6", "fc7") else 0.01
        assert layer.weight.std().item() == pytest.approx(std, rel=0.05), name
        assert torch.all(layer.bias == (0.1 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0))


@pytest.mark.parametrize("init", ["paper", "paper_gain", "caffe"])
def test_positive_bias_sets_the_constant_of_the_positive_biases_only(build, init):
    """model.positive_bias (the table_cpu preset's 0.1, ablations/README.md): the same weights,
    the positive biases of conv2, conv4, conv5, fc6, fc7 at the value asked for, the others 0."""
    default, _ = build(f"model.init={init}")
    net, _ = build(f"model.init={init}", "model.positive_bias=0.1")
    for (name, d), (_, layer) in zip(default.learned_layers(), net.learned_layers()):
        assert torch.equal(d.weight, layer.weight), name
        assert torch.all(layer.bias == (0.1 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0)), name


@pytest.mark.parametrize("init", ["paper", "paper_gain", "caffe"])
def test_tanh_units_get_no_positive_biases(build, init):
    """Section 5's positive biases are "to provide the ReLUs with positive inputs"; with tanh
    units every bias starts at 0, the weights as with ReLUs."""
    torch.manual_seed(0)
    relu, _ = build(f"model.init={init}")
    torch.manual_seed(0)
    tanh, _ = build(f"model.init={init}", "+ablation=tanh")
    assert any(layer.bias.abs().sum() > 0 for _, layer in relu.learned_layers())
    for (name, r), (_, t) in zip(relu.learned_layers(), tanh.learned_layers()):
        assert torch.equal(r.weight, t.weight), name
        assert torch.all(t.bias == 0), name


def test_kaiming_initialisation(build):
    net, _ = build("model.init=kaiming")
    for name, layer in net.learned_layers():
        fan_in = layer.weight[0].numel()
        std = 0.01 if name == "fc8" else math.sqrt(2.0 / fan_in)
        assert layer.weight.std().item() == pytest.approx(std, rel=0.05), name
        assert torch.all(layer.bias == 0)


def test_bad_switches_name_the_key(build):
    with pytest.raises(InstantiationException, match="model.init='xavier'"):
        build("model.init=xavier")
    with pytest.raises(InstantiationException, match="model.activation='gelu'"):
        build("model.activation=gelu")
