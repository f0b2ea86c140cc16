"""Kernel sharing through the real entry point (python -m kmexp.train) on the bundled digits.

Every backbone x sharing choice of the kernel-sharing paper, tiny (ConvMixer-16/8,
SE-ResNet-d2 with narrow stages), batch 8, two steps; one multirun per backbone.
"""

import pytest

from kmexp.components import count_parameters
from kmexp.flops import count_flops
from kmexp.methods import build_model
from kmexp.sharing import shared_kernels
from tests.conftest import METHODS, TINY, model_cfg, run_cli, summaries

pytestmark = pytest.mark.slow
RUN = [*TINY, "dataset.datamodule.batch_size=8", "method=full", "optim=sgd_short", "export_patch=false"]
CONVMIXER = ["backbone=convmixer", "backbone.dim=16", "backbone.depth=8"]
SE_RESNET = ["backbone=se_resnet", "backbone.depth=2", "backbone.widths=[16,32,64]", "backbone.stem_width=8"]
SHARING = {
    "none": {"strategy": "none"},
    "kernels2": {"strategy": "kernels", "num_kernels": 2},
    "kernels4": {"strategy": "kernels", "num_kernels": 4},
    "kernels8": {"strategy": "kernels", "num_kernels": 8},
    "stages_all": {"strategy": "stages", "stages": [1, 2, 3]},
    "stages_23": {"strategy": "stages", "stages": [2, 3]},
    "stages_3": {"strategy": "stages", "stages": [3]},
}


def expected_model(summary, method="full"):
    cfg = model_cfg(method, backbone=summary["backbone"], sharing=summary["config"]["sharing"])
    cfg["backbone"] = summary["config"]["backbone"]
    return build_model(cfg)


@pytest.mark.parametrize(
    "backbone,choices,kernels",
    [
        (CONVMIXER, ["none", "kernels2", "kernels4", "kernels8"], {"none": 0, "kernels2": 2, "kernels4": 4, "kernels8": 8}),
        (SE_RESNET, ["none", "stages_all", "stages_23", "stages_3"], {"none": 0, "stages_all": 3, "stages_23": 2, "stages_3": 1}),
    ],
    ids=["convmixer", "se_resnet"],
)
def test_every_sharing_choice_trains_and_reports_counts_and_flops(tmp_path, backbone, choices, kernels):
    run_cli(["-m", *RUN, *backbone, f"sharing={','.join(choices)}"], tmp_path, timeout=900)
    runs = {s["config"]["sharing"].get("num_kernels") or tuple(s["config"]["sharing"].get("stages") or ()) or "none": s
            for s in summaries(tmp_path)}
    assert len(runs) == len(choices)
    totals = {}
    for choice in choices:
        cfg = SHARING[choice]
        key = cfg.get("num_kernels") or tuple(cfg.get("stages") or ()) or "none"
        s = runs[key]
        assert s["status"] == "finished" and s["global_steps"] == 2, choice
        assert s["config"]["sharing"] == cfg
        net = expected_model(s)
        assert len(shared_kernels(net)) == kernels[choice]
        assert s["params/total"] == s["params/trainable"] == count_parameters(net)["params/total"]
        assert s["params/flops"] == count_flops(net, (3, 32, 32))
        totals[choice] = s["params/total"]
    assert all(totals[c] < totals["none"] for c in choices if c != "none")
    assert len({s["params/flops"] for s in runs.values()}) == 1  # sharing leaves the computation as it is


def test_km_on_a_kernel_shared_convmixer(tmp_path):
    run_cli([*RUN, *CONVMIXER, "sharing=kernels2", "method=km", "export_patch=true"], tmp_path)
    [s] = summaries(tmp_path)
    assert s["status"] == "finished" and s["method"] == "km" and s["components"] == METHODS["km"][0]
    net = expected_model(s, "km")
    counts = count_parameters(net)
    assert (s["params/total"], s["params/trainable"]) == (counts["params/total"], counts["params/trainable"])
    modulators = 8 * (2 * 81 * 81) + 8 * 2 + 2  # one per use: 8 depthwise, 8 pointwise, the stem
    norms_and_head = 2 * 16 * 17 + 16 * 10 + 10
    assert s["params/trainable"] == modulators + norms_and_head
    assert s["patch/bytes"] > 4 * s["params/trainable"]


def test_sharing_non_isomorphic_layers_stops_with_one_clear_error(tmp_path):
    proc = run_cli([*RUN, *CONVMIXER, "+sharing.groups=[[stem.0,blocks.0.1]]"], tmp_path, check=False)
    assert proc.returncode == 1
    assert "isomorphic" in proc.stderr and "stem.0" in proc.stderr and "blocks.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr
