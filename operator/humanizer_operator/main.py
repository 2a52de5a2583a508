"""The operator's registration module: ``kopf run -m humanizer_operator.main`` (or ``humanizer-operator``).

Importing the handler modules registers them; the startup handler below configures kopf (its
bookkeeping in annotations, not in ``.status``), logging, the Celery app and the metrics server.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from humanizer.broker import configure_app
from humanizer.config import get_settings
from humanizer.logging import configure_logging
from humanizer_operator import k8s, metrics
from humanizer_operator.handlers import autoscale, deletion, jobs, lifecycle, progress  # noqa: F401  (registration)
from humanizer_operator.settings import get_operator_settings

ANNOTATION_PREFIX = "humanizer.dev"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    hz = get_settings()
    op = get_operator_settings()
    configure_logging(hz.log_level, hz.log_format)
    # kopf's handler progress and last-handled spec live in annotations: .status is ours alone
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    # spec.input is immutable and may be ~1 MB of text: kept out of the diff base (annotations are
    # limited to 256 KiB in total)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration", ignored_fields=["spec.input"]
    )
    # No handler needs a finalizer (no delete handler, no timer or daemon: see handlers/deletion.py and
    # handlers/progress.py), so kopf never adds one; naming the one earlier versions used makes kopf
    # remove it too when it handles such an object (the status loop removes it as well).
    settings.persistence.finalizer = k8s.LEGACY_FINALIZER
    # handlers post their Events explicitly (kopf.event); of the log, only errors become Events
    settings.posting.level = logging.ERROR
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    configure_app(hz)
    metrics.start_metrics_server(op.metrics_port)
    logger.info("humanizer operator: Redis %s, provider %s", hz.redis_dsn_redacted, hz.provider)
