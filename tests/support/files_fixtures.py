"""Fixtures for tests of the emulated files service."""
