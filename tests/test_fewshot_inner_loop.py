"""The inner loop of MAML / ANIL / KM (KM Sec. IV-C): second-order meta-gradient against a
hand-built reference, what adapts, what the outer loop updates, and the parameter counts
of Table III's networks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kmexp.components import tag_parameters
from kmexp.errors import ConfigError
from kmexp.inner_loop import InnerLoop, inner_loop_names
from kmexp.lit.fewshot import FewShotModule, MetaConfig, ci95
from kmexp.methods import build_model

OUTER = ["convolution", "implicit", "explicit", "classifier"]
INNER = {"maml": ["convolution", "implicit", "classifier"], "anil": ["classifier"], "km": ["explicit", "classifier"]}


def conv4(method: str, backbone: str = "conv4_omniglot", ways: int = 5, **backbone_opts) -> nn.Module:
    return build_model({
        "backbone": {"name": backbone, **backbone_opts}, "num_classes": ways,
        "method": {"name": method, "components": OUTER},
        "modulator": {}, "sharing": {"strategy": "none"},
    })


def task(ways=5, shots=2, query=3, channels=1, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(ways * shots, channels, size, size, generator=g), torch.arange(ways).repeat_interleave(shots),
            torch.randn(ways * query, channels, size, size, generator=g), torch.arange(ways).repeat_interleave(query))


class TwoLayer(nn.Module):
    """x -> fc(tanh(body(x))): small enough to differentiate by hand."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.fc = nn.Linear(4, 2)

    def get_classifier(self):  # heads are named, never guessed (kmexp.models.heads)
        return self.fc

    def forward(self, x):
        return self.fc(torch.tanh(self.body(x)))


def reference_meta_gradient(theta, xs, ys, xq, yq, lr, steps, first_order=False):
    """MAML written out on plain tensors: theta_{k+1} = theta_k - lr * dL_s/dtheta_k, then
    dL_q(theta_K)/dtheta_0 through every step (Finn et al. 2017, Eq. 1 and the meta-objective)."""
    def f(w1, b1, w2, b2, x):
        return F.linear(torch.tanh(F.linear(x, w1, b1)), w2, b2)

    theta0 = [t.detach().clone().requires_grad_() for t in theta]
    fast = theta0
    for _ in range(steps):
        grads = torch.autograd.grad(F.cross_entropy(f(*fast, xs), ys), fast, create_graph=not first_order)
        fast = [w - lr * g for w, g in zip(fast, grads, strict=True)]
    return torch.autograd.grad(F.cross_entropy(f(*fast, xq), yq), theta0)


def our_meta_gradient(net, xs, ys, xq, yq, lr, steps, first_order=False):
    loop = InnerLoop(net, [n for n, _ in net.named_parameters()])
    params = loop.parameters()
    adapted = loop.adapt(params, xs, ys, lr, steps, first_order)
    return torch.autograd.grad(F.cross_entropy(loop.forward(adapted, xq), yq), list(params.values()))


@pytest.fixture
def two_layer_task():
    torch.manual_seed(0)
    net = TwoLayer().double()
    xs, xq = torch.randn(6, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    ys, yq = torch.tensor([0, 1, 0, 1, 0, 1]), torch.tensor([0, 1, 1, 0, 0, 1, 1, 0])
    return net, xs, ys, xq, yq


@pytest.mark.parametrize("steps", [1, 2])
def test_meta_gradient_matches_the_hand_written_second_order_reference(two_layer_task, steps):
    net, xs, ys, xq, yq = two_layer_task
    theta = [net.body.weight, net.body.bias, net.fc.weight, net.fc.bias]
    ours = our_meta_gradient(net, xs, ys, xq, yq, lr=0.7, steps=steps)
    reference = reference_meta_gradient(theta, xs, ys, xq, yq, lr=0.7, steps=steps)
    first_order = reference_meta_gradient(theta, xs, ys, xq, yq, lr=0.7, steps=steps, first_order=True)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the second-order terms matter here, so a first-order loop would fail the check above
    assert max(float((a - b).abs().max()) for a, b in zip(reference, first_order, strict=True)) > 1e-3


def test_meta_gradient_matches_finite_differences_of_the_meta_objective(two_layer_task):
    """Independent of autograd's double backward: central differences of L_q(adapt(theta))."""
    net, xs, ys, xq, yq = two_layer_task
    loop = InnerLoop(net, [n for n, _ in net.named_parameters()])

    def meta_objective(params):
        with torch.enable_grad():
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
            adapted = loop.adapt(params, xs, ys, 0.7, 2, first_order=True)  # values only
        return F.cross_entropy(loop.forward(adapted, xq), yq).detach().item()

    grads = our_meta_gradient(net, xs, ys, xq, yq, lr=0.7, steps=2)
    base = {n: p.detach() for n, p in net.named_parameters()}
    direction = {n: torch.randn_like(p) for n, p in base.items()}
    eps = 1e-6
    plus = meta_objective({n: base[n] + eps * direction[n] for n in base})
    minus = meta_objective({n: base[n] - eps * direction[n] for n in base})
    numeric = (plus - minus) / (2 * eps)
    analytic = sum(float((g * direction[n]).sum()) for g, n in zip(grads, base, strict=True))
    assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_first_order_option_drops_the_second_order_terms(two_layer_task):
    net, xs, ys, xq, yq = two_layer_task
    theta = [net.body.weight, net.body.bias, net.fc.weight, net.fc.bias]
    ours = our_meta_gradient(net, xs, ys, xq, yq, lr=0.7, steps=2, first_order=True)
    reference = reference_meta_gradient(theta, xs, ys, xq, yq, lr=0.7, steps=2, first_order=True)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", sorted(INNER))
def test_only_the_methods_components_change_in_the_inner_loop(method):
    net = conv4(method, hidden=8)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    names = inner_loop_names(net, INNER[method])
    loop = InnerLoop(net, names)
    params = loop.parameters()
    xs, ys, _, _ = task()
    adapted = loop.adapt(params, xs, ys, lr=0.5, steps=2)

    tags = tag_parameters(net)
    expected = {n for n in tags if tags[n] & set(INNER[method])}
    changed = {n for n in adapted if not torch.equal(adapted[n], params[n])}
    assert changed == expected == set(names)
    assert all(adapted[n] is params[n] for n in params if n not in expected)
    if method == "km":  # modulators and classifier only: 4 modulators x 2 matrices + weight + bias
        assert len(names) == 10 and all("parametrizations.weight.0.weights" in n or n.startswith("classifier.")
                                        for n in names)
    if method == "anil":
        assert names == ["classifier.weight", "classifier.bias"] and loop.head_only
    for n, p in net.named_parameters():  # the module itself is never modified
        assert torch.equal(p, before[n])


def test_functional_call_runs_kernel_modulated_convolutions():
    """KM's parametrized convolutions take adapted modulators and base kernels by name."""
    net = conv4("km", hidden=8)
    loop = InnerLoop(net, inner_loop_names(net, ["explicit"]))
    x = task()[0]
    params = loop.parameters()
    torch.testing.assert_close(loop.forward(params, x), net(x))
    for name in ("features.1.0.parametrizations.weight.0.weights.0", "features.2.0.parametrizations.weight.original"):
        changed = dict(params, **{name: params[name] * 1.5})
        reference = copy.deepcopy(net)
        with torch.no_grad():
            dict(reference.named_parameters())[name].mul_(1.5)
        out = loop.forward(changed, x)
        torch.testing.assert_close(out, reference(x))
        assert not torch.allclose(out, net(x))


def test_anil_features_once_path_equals_the_full_network_path():
    net = conv4("anil", hidden=8).double()
    xs, ys, xq, yq = (t.double() if t.is_floating_point() else t for t in task())
    grads = {}
    for head_only in (True, False):
        loop = InnerLoop(net, inner_loop_names(net, ["classifier"]), head_only=head_only)
        params = loop.parameters()
        adapted = loop.adapt(params, xs, ys, lr=0.3, steps=3)
        grads[head_only] = torch.autograd.grad(F.cross_entropy(loop.forward(adapted, xq), yq), list(params.values()))
    for a, b in zip(grads[True], grads[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="head_only"):
        InnerLoop(net, inner_loop_names(net, INNER["maml"]), head_only=True)


def test_batch_norm_uses_the_statistics_of_each_batch():
    """MAML's batch norm: no running statistics, train and eval mode agree, and a query
    image's output depends on the other images of its batch (transductive)."""
    net = conv4("maml", hidden=8)
    assert not list(net.buffers())
    x = task()[0]
    out_train = net.train()(x)
    out_eval = net.eval()(x)
    torch.testing.assert_close(out_train, out_eval)
    assert not torch.allclose(net(x[:3])[0], net(x)[0])


def meta_cfg(**overrides) -> dict:
    cfg = {"ways": 5, "shots": 2, "query": 3, "meta_batch_size": 2, "inner_lr": 0.4, "inner_steps": 1,
           "test_inner_lr": 0.4, "test_inner_steps": 2, "first_order": False, "outer_components": OUTER,
           "inner_components": None, "iterations_per_epoch": 1, "num_val_tasks": 1, "num_test_tasks": 2,
           "task_seed": 0}
    cfg.update(overrides)
    return cfg


def fewshot_module(method: str, **meta) -> FewShotModule:
    comps = {"maml": INNER["maml"], "anil": INNER["maml"], "km": ["implicit", "explicit", "classifier"]}[method]
    model = {"backbone": {"name": "conv4_omniglot", "hidden": 8}, "num_classes": 5,
             "method": {"name": method, "components": comps, "inner_components": INNER[method]},
             "modulator": {}, "sharing": {"strategy": "none"}}
    optim = {"name": "adam", "lr": 1e-2, "weight_decay": 0.0, "scheduler": {"name": "none"}}
    return FewShotModule(model, optim, meta_cfg(**meta))


def meta_batch(n_tasks=2):
    tasks = [task(seed=i) for i in range(n_tasks)]
    return {k: torch.stack([t[i] for t in tasks]) for i, k in enumerate(("support_x", "support_y", "query_x", "query_y"))}


@pytest.mark.parametrize("method,outer,unchanged", [
    ("km", OUTER, set()),                                       # KM meta-learns the conv weights too
    ("anil", OUTER, set()),
    ("km", ["explicit", "classifier"], {"convolution", "implicit"}),  # a restricted outer loop
])
@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_the_outer_loop_updates_what_it_should(method, outer, unchanged):
    module = fewshot_module(method, outer_components=outer)
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    optimizer = module.configure_optimizers()
    loss = module.training_step(meta_batch(), 0)
    loss.backward()
    optimizer.step()
    tags = tag_parameters(module.net)
    for name, p in module.net.named_parameters():
        should_change = bool(tags[name] & set(outer))
        assert p.requires_grad == should_change, name
        assert (not torch.equal(p.detach(), before[name])) == should_change, name
        if tags[name] & unchanged:
            assert p.grad is None
    assert module.extra_summary()["components"] == list(outer)


def test_meta_test_adaptation_leaves_the_meta_learned_weights_alone():
    module = fewshot_module("km")
    before = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    with torch.no_grad():  # as Lightning's evaluation loop
        losses, accs = module._evaluate(meta_batch(3))
    assert losses.shape == accs.shape == (3,) and ((0 <= accs) & (accs <= 1)).all()
    assert all(p.grad is None and torch.equal(p, before[n]) for n, p in module.net.named_parameters())


def test_ci95_is_mamls_interval():
    accs = torch.tensor([0.5, 0.7, 0.9, 0.6])
    assert ci95(accs) == pytest.approx(1.96 * float(accs.std(unbiased=False)) / 2)


@pytest.mark.parametrize("overrides,message", [
    ({"inner_steps": -1}, "meta.inner_steps=-1"),
    ({"ways": 0}, "meta.ways=0"),
    ({"inner_lr_typo": 0.1}, "unknown meta option"),
    ({"inner_components": ["explicit", "heads"]}, "unknown component"),
])
def test_bad_meta_config_gives_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        MetaConfig.from_dict(meta_cfg(**overrides))


def test_method_without_an_inner_loop_is_refused():
    model = {"backbone": {"name": "conv4_omniglot", "hidden": 8}, "num_classes": 5,
             "method": {"name": "bl", "components": ["implicit", "classifier"]},
             "modulator": {}, "sharing": {"strategy": "none"}}
    with pytest.raises(ConfigError, match="does not say what its inner loop adapts"):
        FewShotModule(model, {"name": "adam", "lr": 1e-3}, meta_cfg())


# Table III networks (Finn et al. 2017): exact inner- and outer-loop counts per method.
PAPER_NETWORKS = {
    # (backbone, ways): {method: (inner loop, outer loop)}
    ("conv4_omniglot", 20): {"maml": (113_236, 113_236), "anil": (1_300, 113_236), "km": (1_948, 113_884)},
    ("conv4_miniimagenet", 5): {"maml": (32_901, 32_901), "anil": (4_005, 32_901), "km": (4_653, 33_549)},
}


@pytest.mark.parametrize("backbone,ways", sorted(PAPER_NETWORKS))
def test_inner_loop_parameter_counts_of_the_table3_networks(backbone, ways):
    counts = {}
    for method in INNER:
        net = conv4(method, backbone, ways)
        inner = InnerLoop(net, inner_loop_names(net, INNER[method])).num_parameters
        outer = sum(p.numel() for p in net.parameters() if p.requires_grad)
        counts[method] = (inner, outer)
    assert counts == PAPER_NETWORKS[(backbone, ways)]


def test_km_adapts_more_than_51x_fewer_parameters_than_maml_on_omniglot_20way():
    """KM Sec. IV-C: "< 51X trainable parameters". With the classifier counted, the claim holds
    for the Omniglot 20-way network (58.1x); on mini-ImageNet's network the 800x5 classifier
    dominates (7.07x) and only the modulators alone are ~51x fewer than MAML's parameters."""
    omniglot, mini = PAPER_NETWORKS[("conv4_omniglot", 20)], PAPER_NETWORKS[("conv4_miniimagenet", 5)]
    assert omniglot["maml"][0] / omniglot["km"][0] == pytest.approx(58.13, abs=0.01)
    assert omniglot["maml"][0] / omniglot["km"][0] > 51
    assert mini["maml"][0] / mini["km"][0] == pytest.approx(7.07, abs=0.01)
    modulators = 4 * 2 * 9 * 9
    assert mini["km"][0] - 4_005 == modulators == 648
    assert mini["maml"][0] / modulators == pytest.approx(50.77, abs=0.01)
