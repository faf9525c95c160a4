"""Tests of dsr/delta."""
