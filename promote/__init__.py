"""promote: a secrets-aware, multi-environment GitOps promotion manager."""

__version__ = "0.1.0"
