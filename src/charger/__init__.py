"""charger: a real-time charging worker for cloud telephony."""

__version__ = "0.1.0"
