"""See engine/backends/__init__.py (the registry) and base.py (the interface)."""
