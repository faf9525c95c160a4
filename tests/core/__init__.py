"""Tests of dsr/core."""
