"""The vocabulary of ``rfgraph verify``: its checks, skip reasons, exit statuses and default
time budget. Plain constants (no torch, no SymPy): the command line's help text reads them
without importing the verify package; :mod:`rfgraph.verify` re-exports them."""

from __future__ import annotations

CHECKS = ("shape", "params", "macs", "rf", "semantics", "memory")
TOTAL = "(total)"

#: Why a check was skipped. A skip *by design* (the first group) is a stated, documented case in
#: which there is nothing verify can compare; the result can still be OK. A skip in the second
#: group means the check *could not run* although it applies: the result is "could not check"
#: (exit status 4) unless something failed. A skip row without a known reason counts as "could
#: not check". docs/verify.md lists them all.
SKIP_BY_DESIGN: dict[str, str] = {
    "unknown": "rfgraph gives no value or field here (unknown): nothing to compare",
    "upper-bound": "rfgraph gives only an upper bound of the field (e.g. window attention "
                   "taken as global)",
    "integer": "integer tensor (e.g. pooling indices): no gradient to probe",
    "constant": "the output depends on no input pixel (a constant, or only padding)",
    "padding": "the probed elements read no input pixel (they lie in padding) where rfgraph "
               "extrapolates a field to them",
    "mirrored": "reflect/replicate/circular padding: a padded coordinate stands for a pixel "
                "inside the image",
    "not-probed": "big model: a representative subset of the nodes is probed",
    "same-module": "a shared module, checked at its first node",
    "not-one-conv": "a chain of convolutions that is not one convolution",
    "no-reference": "no independent reference for this configuration of the layer",
}
SKIP_COULD_NOT_CHECK: dict[str, str] = {
    "no-size": "no input size was found at which the check can run (the model, or the part of "
               "it the check needs, rejects every size tried)",
    "too-large": "the field is too large to probe",
    "too-slow": "not checked: too slow (over the per-node time budget)",
    "error": "the check raised an error (a limit of verify or of the probe copy)",
    "not-run": "not run: an earlier node failed in torch",
}
SKIP_REASONS = {**SKIP_BY_DESIGN, **SKIP_COULD_NOT_CHECK}
#: exit statuses of ``rfgraph verify`` (2 = user error and 3 = internal error come from the CLI)
EXIT_OK, EXIT_MISMATCH, EXIT_COULD_NOT_CHECK = 0, 1, 4
#: default time budget (seconds) of one node's semantics check (``node_budget``)
NODE_BUDGET = 5.0
