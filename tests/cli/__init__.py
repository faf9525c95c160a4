"""Tests of dsr/cli."""
