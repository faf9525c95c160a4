"""dsr-lake: data-subject requests (GDPR export and erasure) on a Delta Lake."""

__version__ = "0.1.0"
__all__ = ["__version__"]
