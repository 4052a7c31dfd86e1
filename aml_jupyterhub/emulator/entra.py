"""Placeholder: filled in by the entra work."""


def routes(state):
    return []
