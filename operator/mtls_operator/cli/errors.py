"""The error every command raises for what the user can fix."""

from __future__ import annotations


class CommandError(Exception):
    """A one-line message for the user."""
