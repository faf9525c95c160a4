"""Tests of dsr/engines."""
