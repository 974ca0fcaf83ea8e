"""Test helpers importable from every test module (tests/ is on pythonpath)."""
