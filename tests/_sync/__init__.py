# Generated from tests/_async/__init__.py by tools/synchro.py: edit that file, not this one.
