"""loki-event-sync: ship Kubernetes Events to Loki, once each, from a CronJob."""

__version__ = "0.2.0"
