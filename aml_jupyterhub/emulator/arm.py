"""Placeholder: filled in by the arm work."""


def routes(state):
    return []
