"""Presentation: the ``dsr`` command (``dsr.cli.main``), run and verify output, receipts, ``dsr demo``."""
