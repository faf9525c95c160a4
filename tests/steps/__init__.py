"""Tests of dsr/steps."""
