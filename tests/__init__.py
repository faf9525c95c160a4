"""dsr-lake tests: one folder per package of dsr/ (tests/core tests dsr/core...), system-wide invariants at the top."""
