"""pruningrl: certified robustness of pruned reinforcement-learning policies.

The library behind the book *Pruning Cannot Hurt Robustness*. One module per concept:
``policies`` (actor MLPs), ``bounds`` (Lipschitz and total-variation certificates),
and the rest as the book grows.
"""

__version__ = "0.1.0"
