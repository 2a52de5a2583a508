"""The node tier's scenarios on a kind cluster with the real image (``make e2e-kind`` creates the
cluster and loads the image; the ``release`` fixture of tests/e2e/conftest.py installs the chart the
README's way, exactly as the node tier does). The scenario code is the node tier's own (imported from
tests/node), so the two tiers cannot drift apart. Scenarios that need the node's host (probes made from
inside a pod's namespaces, the ClusterIP reached from the host) stay in the node tier.

Skipped (with the reason, also printed in the terminal summary) when Docker or kind is missing or the
context in ``HUMANIZER_E2E_CONTEXT`` does not exist; see tests/e2e/kind_env.py.
"""

from __future__ import annotations

import pytest

from .kind_env import unavailable_reason

_REASON = unavailable_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# The shared scenarios: collected here, they run against this tier's `release` fixture.
from tests.node.test_install import (  # noqa: E402, F401
    test_admission_refuses_a_pod_that_breaks_restricted,
    test_every_component_ready_under_restricted,
    test_readme_example_jobs_succeed,
    test_security_context_holds_in_the_running_process,
    test_worker_pods_have_one_celery_node_name_each,
)
from tests.node.test_scale_and_faults import (  # noqa: E402, F401
    loaded,
    test_backlog_scales_workers_new_pods_consume_and_scale_back,
    test_fault_mid_job_every_chunk_exactly_once,
    test_scale_down_stops_busy_workers_without_losing_chunks,
)
