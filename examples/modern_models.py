"""Modern models with rfgraph: a vision transformer, a squeeze-and-excitation net, an
auxiliary-head net, in plain PyTorch (examples/zoo), no torchvision needed.

Run: ``python examples/modern_models.py``. It prints, from ``rfgraph.analyze`` only:

1. a ViT whose position embedding follows the input size: one MACs formula, quadratic in the
   token count floor(H/8)·floor(W/8), valid at every size;
2. a torchvision-style ViT with a fixed position embedding: the same kind of formula, with the
   size condition the model asserts (H = 67) stated, not failed;
3. an EfficientNet stage with squeeze-and-excitation and stochastic depth: eval mode makes
   stochastic depth the identity, and the SE gates give one compact global field;
4. a GoogLeNet-like net with auxiliary heads: in eval mode their parameters are reported as not
   reached, so params + unreached = sum(p.numel()); in training mode they are counted.

``tests/test_examples.py`` checks every number against torch.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rfgraph  # noqa: E402
from examples.zoo.efficientnet import efficientnet_small  # noqa: E402
from examples.zoo.googlenet_aux import googlenet_aux  # noqa: E402
from examples.zoo.vit import vit_dynamic, vit_fixed  # noqa: E402
from rfgraph.symbolic import format_expr  # noqa: E402


def vit_macs() -> tuple[str, int, int]:
    """The dynamic ViT's MACs formula and its values at 64×64 and 96×128."""
    a = rfgraph.analyze(vit_dynamic(), (1, 3, "H", "W"))
    assert a.complete
    return (format_expr(a.total_macs), a.evaluate(H=64, W=64).total_macs_at,
            a.evaluate(H=96, W=128).total_macs_at)


def vit_fixed_conditions() -> list[str]:
    """The fixed-embedding ViT analyses symbolically; its asserts become conditions."""
    return rfgraph.analyze(vit_fixed(), (1, 3, "H", "W")).conditions


def se_field() -> tuple[str, bool, float]:
    """The SE stage's output field: one global closed form, and the time it takes."""
    import time

    t = time.perf_counter()
    a = rfgraph.analyze(efficientnet_small(), (1, 3, "H", "W"))
    elapsed = time.perf_counter() - t
    last = [n for n in a.nodes if a.field(n)][-1]
    f = a.field(last)[0]
    return format_expr(f.size), f.is_global, elapsed


def aux_params() -> dict[str, int]:
    model = googlenet_aux()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = rfgraph.analyze(model, (1, 3, "H", "W"))
        tr = rfgraph.analyze(model, (1, 3, "H", "W"), mode="train")
    return {"eval_params": ev.total_params, "eval_unreached": ev.total_params_unreached,
            "train_params": tr.total_params, "train_unreached": tr.total_params_unreached,
            "numel": sum(p.numel() for p in model.parameters())}


def main() -> None:
    formula, at64, at96 = vit_macs()
    print("1. ViT (position embedding resized to the token grid)")
    print(f"   MACs = {formula}")
    print(f"   at 64×64: {at64:,}   at 96×128: {at96:,}")
    print("2. ViT with a fixed position embedding: conditions on the input sizes")
    for c in vit_fixed_conditions():
        print(f"   {c}")
    size, is_global, elapsed = se_field()
    print("3. EfficientNet stage (SE + stochastic depth), eval mode")
    print(f"   output field along H: {size} (global: {is_global}), analysed in {elapsed:.2f} s")
    p = aux_params()
    print("4. GoogLeNet-like net with auxiliary heads")
    print(f"   eval:  params {p['eval_params']:,} + not reached {p['eval_unreached']:,} "
          f"= {p['eval_params'] + p['eval_unreached']:,} = sum(p.numel()) {p['numel']:,}")
    print(f"   train: params {p['train_params']:,} (aux heads counted), not reached "
          f"{p['train_unreached']:,}")


if __name__ == "__main__":
    main()
