"""Random Bases Descent (Gressmann et al. 2020; KM Table I, LD row): one step is the true
gradient projected on the step's random bases, regenerated from the seed, never stored."""

import pytest
import torch
from torch import nn

from kmexp.errors import ConfigError
from kmexp.models import build_backbone
from kmexp.optim import build_optimizer
from kmexp.optim.rbd import RandomBasesDescent, RBDConfig, random_bases, rbd_parameter_counts


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5))


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def loss_and_grad(net: nn.Module, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)
    net.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    return flat(p.grad for p in net.parameters())


def bases_matrix(numel: int, dim: int, seed: int, step: int, chunk_size: int) -> torch.Tensor:
    return torch.cat(list(random_bases(numel, dim, seed, step, chunk_size)))


def test_one_step_is_the_projection_of_the_true_gradient_on_the_regenerated_bases():
    net = tiny_net()
    numel = sum(p.numel() for p in net.parameters())  # 108 + 4 + 8 + 20 + 5 = 145
    dim, seed, chunk, lr = 37, 11, 8, 0.5  # 37 bases in chunks of 8, 8, 8, 8, 5
    opt = RandomBasesDescent(net.parameters(), lr=lr, dim=dim, seed=seed, chunk_size=chunk)
    theta0 = flat(p.detach().clone() for p in net.parameters())
    g = loss_and_grad(net)
    opt.step()

    B = bases_matrix(numel, dim, seed, step=0, chunk_size=chunk)
    assert B.shape == (dim, numel)
    assert torch.allclose(B.norm(dim=1), torch.ones(dim), atol=1e-5)  # normalised Gaussian bases
    expected = theta0 - lr * B.t() @ (B @ g)
    theta1 = flat(p.detach() for p in net.parameters())
    assert torch.allclose(theta1, expected, atol=1e-6, rtol=1e-5)
    # the step lies in the d-dimensional span of the bases: nothing of it is orthogonal to them
    delta = theta1 - theta0
    coords = torch.linalg.lstsq(B.t().double(), delta.double().unsqueeze(1)).solution
    assert torch.allclose((B.t().double() @ coords).squeeze(1), delta.double(), atol=1e-6)
    assert delta.norm() > 0


def test_bases_are_redrawn_every_step_and_reproducible_from_the_seed():
    numel, dim = 50, 6
    step0 = bases_matrix(numel, dim, seed=3, step=0, chunk_size=4)
    assert torch.equal(step0, bases_matrix(numel, dim, seed=3, step=0, chunk_size=4))
    assert not torch.allclose(step0, bases_matrix(numel, dim, seed=3, step=1, chunk_size=4))
    assert not torch.allclose(step0, bases_matrix(numel, dim, seed=4, step=0, chunk_size=4))

    net = tiny_net()
    opt = RandomBasesDescent(net.parameters(), lr=0.1, dim=dim, seed=3, chunk_size=4)
    for _ in range(2):
        loss_and_grad(net)
        opt.step()
    assert opt.param_groups[0]["step"] == 2
    # nothing of size d x D is kept: without momentum the optimizer state is empty
    assert not any(opt.state.values())


def test_a_resumed_optimizer_draws_the_same_bases_as_an_uninterrupted_one():
    straight, resumed = tiny_net(), tiny_net()
    opt_a = RandomBasesDescent(straight.parameters(), lr=0.3, dim=9, seed=5, chunk_size=4)
    opt_b = RandomBasesDescent(resumed.parameters(), lr=0.3, dim=9, seed=5, chunk_size=4)
    for net, opt in ((straight, opt_a), (resumed, opt_b)):
        loss_and_grad(net, seed=1)
        opt.step()
    saved = opt_b.state_dict()
    opt_c = RandomBasesDescent(resumed.parameters(), lr=0.3, dim=9, seed=999, chunk_size=4)
    opt_c.load_state_dict(saved)  # the checkpoint's seed and step counter win
    for net, opt in ((straight, opt_a), (resumed, opt_c)):
        loss_and_grad(net, seed=2)
        opt.step()
    assert torch.equal(flat(straight.parameters()), flat(resumed.parameters()))


def test_weight_decay_is_projected_and_momentum_accumulates_projected_steps():
    net = tiny_net()
    numel = sum(p.numel() for p in net.parameters())
    wd, mu, lr, dim = 0.01, 0.9, 0.2, 12
    opt = RandomBasesDescent(net.parameters(), lr=lr, dim=dim, seed=2, chunk_size=5, momentum=mu, weight_decay=wd)
    theta0 = flat(p.detach().clone() for p in net.parameters())
    g0 = loss_and_grad(net, seed=1)
    opt.step()
    B0 = bases_matrix(numel, dim, 2, 0, 5)
    u0 = B0.t() @ (B0 @ (g0 + wd * theta0))
    theta1 = flat(p.detach().clone() for p in net.parameters())
    assert torch.allclose(theta1, theta0 - lr * u0, atol=1e-6)
    g1 = loss_and_grad(net, seed=2)
    opt.step()
    B1 = bases_matrix(numel, dim, 2, 1, 5)
    u1 = B1.t() @ (B1 @ (g1 + wd * theta1))
    assert torch.allclose(flat(p.detach() for p in net.parameters()), theta1 - lr * (mu * u0 + u1), atol=1e-6)


@pytest.mark.parametrize(
    "optim,message",
    [
        ({"dim": 0}, "optim.dim=0 must be a positive integer"),
        ({"chunk_size": 8}, "optim=rbd needs optim.dim"),
        ({"dim": 4, "nesterov": True}, "optim.nesterov is not supported"),
        ({"dim": 10_000}, "exceeds the 145 trainable weights"),
    ],
)
def test_bad_rbd_settings_give_one_clear_error(optim, message):
    """RBD is an optimizer: optim=rbd (configs/optim/rbd.yaml) selects it through build_optimizer."""
    with pytest.raises(ConfigError, match=None) as e:
        build_optimizer([{"params": list(tiny_net().parameters())}], {"name": "rbd", "lr": 1.0, **optim})
    assert message in str(e.value)


def test_optim_rbd_builds_random_bases_descent_over_every_group():
    net = tiny_net()
    params = list(net.parameters())
    opt = build_optimizer([{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.0}],
                          {"name": "rbd", "lr": 0.5, "dim": 4, "seed": 1})
    assert isinstance(opt, RandomBasesDescent) and opt.num_weights == 145
    assert (opt.param_groups[0]["dim"], opt.param_groups[0]["seed"], opt.param_groups[0]["lr"]) == (4, 1, 0.5)


def test_config_validation_rejects_a_non_integer_seed():
    with pytest.raises(ConfigError, match="optim.seed"):
        RBDConfig.from_optim({"dim": 4, "seed": "abc"})


def test_summary_reports_the_subspace_dimension_as_trainable():
    counts = rbd_parameter_counts(build_backbone("resnet8_tf", num_classes=10), 8000)
    assert counts["params/trainable"] == 8000  # KM Table I, LD: 8.0 K trainable
    assert counts["params/subspace_weights"] == 78_330
    assert counts["params/trainable_pct"] == pytest.approx(100 * 8000 / 78_330)
    assert "8,000 coordinates" in counts["trainable_note"]
