"""Crash tests of ``dsr purge``: a scenario lake built once per storage, copied per trial; each trial kills the
purge (SIGKILL) at a file event seen from outside the process or at a crash point of ``dsr.delta.crashpoints``,
runs it again, and checks the result with readers that are not dsr's (see ``kit.py``)."""
