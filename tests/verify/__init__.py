"""Tests of dsr/verify."""
