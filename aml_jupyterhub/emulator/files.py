"""Placeholder: filled in by the files work."""


def routes(state):
    return []
