# Generated from tests/_async/__init__.py by tools/synchro.py. Edit that one.
