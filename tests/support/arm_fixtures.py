"""Fixtures for tests of the emulated arm service."""
