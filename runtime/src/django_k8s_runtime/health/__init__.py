"""Kubernetes probes: /health (readiness) and /health/live (liveness)."""
