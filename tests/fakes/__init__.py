"""Test doubles that honour the same contracts as the real adapters (see tests/contracts/)."""
