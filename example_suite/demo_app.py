"""Temporary: the demo app moved to ``pytest_sop.demo``; tests/test_audit_record.py still imports
``demo_app`` from here. Delete once that import reads ``from pytest_sop.demo import ...``."""

from pytest_sop.demo import DemoServer, serve

__all__ = ["DemoServer", "serve"]
