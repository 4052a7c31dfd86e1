"""Placeholder: filled in by the graph work."""


def routes(state):
    return []
