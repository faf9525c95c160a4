"""Tests of dsr/orchestrate and the DAG files in dags/."""
