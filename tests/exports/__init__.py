"""Tests of dsr/exports."""
