"""Shared pytest configuration: hypothesis profiles and database switches.

``HYPOTHESIS_PROFILE=ci`` (set by .ci/run) runs more examples; the default ``dev`` profile keeps
local runs quick.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# a long soak for one suspicious property: HYPOTHESIS_PROFILE=soak pytest tests/... -k name
settings.register_profile("soak", max_examples=1500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
