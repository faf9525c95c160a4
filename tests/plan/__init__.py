"""Tests of dsr/plan."""
