"""A self-hosted, real-time customer-support chat."""

__version__ = "0.1.0"
