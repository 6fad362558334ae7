"""
The backupremote test suite (trial). Hypothesis runs with the ``ci``
profile: no deadline (CI machines are shared), a fixed example budget.
"""

from hypothesis import settings

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")
