"""Fixtures for tests of the emulated entra service."""
