"""Great Expectations suites of goldrl's data-quality gates."""

import os

# Set before any suite module imports GX, so no code path of it ever sends usage events.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
