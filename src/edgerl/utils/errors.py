"""Exception types shared by the whole package.

``InputError`` is raised for anything the user can fix (a bad file, field or value);
the CLI turns it into a one-line message and exit status 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a file, field or value that is invalid. CLI exit status 2."""
