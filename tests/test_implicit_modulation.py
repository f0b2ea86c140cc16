"""Normalization as implicit kernel modulation (Kernel Modulation Sec. III-B, Eq. 5-8)."""

import torch
import torch.nn.functional as F
from torch import nn


def test_eq8_norm_then_conv_equals_scaled_kernel_plus_offset():
    torch.manual_seed(0)
    c_in, c_out = 6, 5
    bn = nn.BatchNorm2d(c_in, eps=1e-5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    bn.eval()
    w = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64)
    x = torch.randn(2, c_in, 12, 12, dtype=torch.float64)

    y = F.conv2d(bn.double()(x), w, padding=1)  # Eq. 5 with Eq. 6

    sigma = torch.sqrt(bn.running_var.double() + bn.eps)
    scale = bn.weight.double() / sigma  # gamma / sigma
    shift = bn.bias.double() - scale * bn.running_mean.double()  # beta - gamma * mu / sigma
    scaled_kernel = w * scale.view(1, -1, 1, 1)  # the kernel modulated by gamma / sigma
    offset = F.conv2d(shift.view(1, -1, 1, 1).expand_as(x), w, padding=1)  # W conv (beta - gamma mu / sigma)
    y_eq8 = F.conv2d(x, scaled_kernel, padding=1) + offset  # Eq. 8

    torch.testing.assert_close(y, y_eq8, atol=1e-10, rtol=1e-10)
    # and the modulation is not trivial: the plain kernel gives something else
    assert not torch.allclose(y, F.conv2d(x, w, padding=1))
