"""Tests of jobs/ (the spark-submit entry point)."""
