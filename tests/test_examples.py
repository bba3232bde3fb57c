"""The seed facts in examples/seed_facts.py, checked against torch and closed forms."""

from __future__ import annotations

import torch
from torch import nn

from examples import seed_facts


def test_dilated_is_26():
    # seed §2.4 and torch: 32 - 3*(3-1) = 26
    assert seed_facts.dilated() == (1, 1, 26, 26)
    y = nn.Conv2d(1, 1, 3, dilation=3)(torch.zeros(1, 1, 32, 32))
    assert tuple(y.shape) == (1, 1, 26, 26)


def test_max_pool_with_indices_and_avg_pool_on_integers():
    assert seed_facts.max_pool_indices() == (1, 64, 112, 112)
    x = torch.arange(224 * 224, dtype=torch.float32).view(1, 1, 224, 224).repeat(1, 64, 1, 1)
    values, indices = nn.MaxPool2d(2, 2, return_indices=True)(x)
    assert tuple(values.shape) == (1, 64, 112, 112)
    # flat indices in each 224x224 plane: the bottom-right of each 2x2 window
    assert indices[0, 0, 0, :2].tolist() == [225, 227]
    avg = nn.AvgPool2d(2, 2)(torch.randint(0, 224, (1, 64, 224, 224)))  # integer dtype works
    assert tuple(avg.shape) == (1, 64, 112, 112)


def test_transposed_full_padding():
    assert seed_facts.transposed_full_padding() == (1, 1, 4, 4)
    assert tuple(nn.ConvTranspose2d(1, 1, 3)(torch.zeros(1, 1, 2, 2)).shape) == (1, 1, 4, 4)


def test_depthwise_separable_576_vs_136():
    std, sep, ratio = seed_facts.depthwise_separable()
    assert (std, sep) == (8 * 8 * 3 * 3, 8 * 1 * 3 * 3 + 8 * 8) == (576, 136)
    assert ratio == "17/72"  # 136/576 reduced


def test_spatially_separable():
    same, full, pair = seed_facts.spatially_separable()
    assert same and (full, pair) == (9, 3 + 3)


def test_flattened_costs():
    pa, pb, ma, mb = seed_facts.flattened(c=16, y=3, x=3)
    assert (pa, pb) == (16 * 3 * 3, 16 + 3 + 3)
    assert ma == "144*M*N" and mb == "22*M*N"  # M·N·C·X·Y vs M·N·(C + X + Y)


def test_grouped_and_stacked():
    assert seed_facts.grouped() == (64 * 64 * 9, 64 * 64 * 9 // 4)
    r2, p2, r1, p1 = seed_facts.stacked_small_kernels(c=16)
    assert (r2, p2, r1, p1) == (5, 2 * 9 * 16 * 16, 5, 25 * 16 * 16)


# -- examples/modern_models.py -------------------------------------------------------------------
def _flop_macs(model, shape):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as c:
        model(torch.zeros(shape))
    return c.get_total_flops() // 2


def test_modern_vit_formula_valid_at_every_size():
    from examples import modern_models
    from examples.zoo.vit import vit_dynamic

    formula, at64, at96 = modern_models.vit_macs()
    assert at64 == _flop_macs(vit_dynamic(), (1, 3, 64, 64))
    assert at96 == _flop_macs(vit_dynamic(), (1, 3, 96, 128))
    # quadratic in the token count t = floor(H/8)*floor(W/8): 64x64 -> t = 64
    assert "floor(H/8)**2*floor(W/8)**2" in formula


def test_modern_fixed_vit_states_its_size():
    from examples import modern_models

    assert modern_models.vit_fixed_conditions()[:2] == ["H = 67", "W = 67"]


def test_modern_se_field_is_global_and_aux_params_add_up():
    from examples import modern_models
    from examples.zoo.googlenet_aux import googlenet_aux

    size, is_global, _ = modern_models.se_field()
    assert is_global and "Max" not in size
    p = modern_models.aux_params()
    numel = sum(q.numel() for q in googlenet_aux().parameters())
    assert p["eval_params"] + p["eval_unreached"] == numel == p["numel"]
    assert p["eval_unreached"] > 0 and p["train_unreached"] == 0 and p["train_params"] == numel
