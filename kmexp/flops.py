"""FLOPs of one forward pass, as the kernel-sharing paper reports them (GFLOPs, Table 1, Figs. 3-5).

How FLOPs are counted: ``torch.utils.flop_counter.FlopCounterMode`` on one image
(batch 1) of the dataset's size. It counts the matrix products of convolutions and
linear layers (including the squeeze-and-excitation layers) at 2 FLOPs per
multiply-accumulate; normalization, activations, bias additions, pooling, residual
additions and SE gating are not counted. Kernel sharing does not change FLOPs: every
use of a shared kernel is still computed. Modulated weights (Kernel Modulation) are
computed before counting and not counted, so the count is that of the deployed
(folded) network; training additionally runs the small modulator MLPs once per step.

This gives ConvMixer-128/4: 0.2199 GFLOPs (paper 0.22), kernel-shared ConvMixer-283/4:
0.8456 (0.86), ConvMixer-128/8: 0.4391 (0.46), kernel-shared ConvMixer-410/8: 3.3008
(3.36), and SE-ResNet-d2 ... d10 from 0.78 to 4.4 GFLOPs (Fig. 5: "0.8 to 4.4").
No convention that adds a fixed cost per block can give the paper's 0.22 *and* 0.46:
ConvMixer-128/8 is ConvMixer-128/4 with four more identical blocks, so its count is at
most twice the other's (< 2 x 0.225 = 0.45). The paper's counts for the larger
ConvMixers are 1.7-4.5% above the convolution FLOPs, as if some element-wise
operations had been counted; they are reproduced to within that margin.

The count runs on a copy of the network on PyTorch's ``meta`` device, so it computes
nothing and costs about as much as copying the model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of ``model`` on one input of shape ``input_shape`` = (channels, height, width)."""
    # A deep copy of a parametrized module shares its class with the original, so the
    # copy must not be folded (that edits the class); cached() computes every
    # parametrized weight once, here before counting starts.
    probe = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(1, *input_shape, device="meta")
    with torch.no_grad(), parametrize.cached():
        for m in probe.modules():
            if parametrize.is_parametrized(m):
                for name in m.parametrizations:
                    getattr(m, name)
        with FlopCounterMode(display=False) as counter:
            probe(x)
    return int(counter.get_total_flops())


def gflops(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    return count_flops(model, input_shape) / 1e9
