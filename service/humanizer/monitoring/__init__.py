"""Health checks, queue depth and an operational snapshot (``humanizer health`` / ``humanizer monitor``)."""

from humanizer.monitoring.queues import queue_depth, queue_depths, unacked_count
from humanizer.monitoring.service import MonitoringService, get_monitoring_service

__all__ = ["MonitoringService", "get_monitoring_service", "queue_depth", "queue_depths", "unacked_count"]
