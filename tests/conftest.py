"""Settings for the whole suite.

Hypothesis: no per-example deadline.  The default (200 ms) measures wall-clock time, so on a
loaded machine (both cores busy, other test runs) a slow example fails for no fault of the
code; the pytest timeout still bounds a test that really hangs.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("posthouse", deadline=None)
settings.load_profile("posthouse")
