"""Verification: Great Expectations suites and what a table must prove after erasure."""
