"""One run: claim, export, erase, verify, complete (``STEPS``), each step its own module, one batch object.

The step functions are also importable from here: ``from dsr import steps; steps.run(policy, engine)``.
"""

from dsr.steps.batch import Batch, safe_error
from dsr.steps.claim import claim_batch
from dsr.steps.complete import complete_batch
from dsr.steps.erase import erase_table
from dsr.steps.export import export_table, finish_exports
from dsr.steps.run import STEPS, RunReport, Step, call, run
from dsr.steps.verify import verify_table

__all__ = [
    "STEPS",
    "Batch",
    "RunReport",
    "Step",
    "call",
    "claim_batch",
    "complete_batch",
    "erase_table",
    "export_table",
    "finish_exports",
    "run",
    "safe_error",
    "verify_table",
]
