"""Reusable test helpers (network namespaces, daemons) for netlab's test tiers.

``test/conftest.py`` puts ``test/`` on ``sys.path``: import as ``from lib import netns``.
"""
