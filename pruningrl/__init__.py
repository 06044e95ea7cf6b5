"""pruningrl: certified robustness of pruned reinforcement-learning policies.

The library behind the book *Pruning Cannot Hurt Robustness*. One module per concept:
``policies`` (actor MLPs), ``bounds`` (Lipschitz and total-variation certificates),
and the rest as the book grows.

Importing the package puts the process in the portable numeric mode (``pruningrl.numerics``):
every number it computes then has the same bits on any x86_64 CPU.
"""

from pruningrl.numerics import apply_on_import as _apply_numeric_mode

__version__ = "0.1.0"

_apply_numeric_mode()
