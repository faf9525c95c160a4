"""How a scheduler drives the steps: what the Airflow DAGs in ``dags/`` share (``dsr.orchestrate.airflow_dag``).

Presentation for Airflow, at the level of the CLI: it calls the steps and never holds logic of its own.
"""
