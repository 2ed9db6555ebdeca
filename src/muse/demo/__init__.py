"""``muse demo``: the model lifecycle end to end on generated multi-tenant data.

Reproduces the paper's three scenarios (§3) with our own numbers — a new tenant moving
from the cold-start map to its own (Fig. 4), a 2-expert ensemble becoming 3 experts with
the refused "p1.5" in between (Fig. 6), and calibration with and without posterior
correction (Table 1) — then its future work (§5): one tenant's drift repaired by an
unattended ``muse refresh`` pass — by running the same ``muse`` commands an operator
would, echoed as typed. It doubles as executable documentation of docs/lifecycle.md.
"""

from muse.demo.operator import CommandRunner, DemoError, run_in_subprocess
from muse.demo.run import DemoResult, OutputExistsError, run_demo

__all__ = [
    "CommandRunner",
    "DemoError",
    "DemoResult",
    "OutputExistsError",
    "run_demo",
    "run_in_subprocess",
]
