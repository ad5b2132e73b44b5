"""The errors the domain raises on purpose, in one small tree.

Every edge translates the same few kinds the same way: ``InvalidInputError``
is what the user gave breaking a rule (a 4xx with the message, a CLI error
line and exit 2), ``NotFoundError`` a name or id that names nothing (404),
``ConflictError`` a request the current state refuses (409),
``UnavailableError`` a service the work depends on failing (try again later).
Each module's own errors subclass one of these and keep their attributes
(positions, suggestions, fields).

``InvalidInputError`` is also a ``ValueError`` and ``NotFoundError`` a
``LookupError``, so code that catches the builtin kinds keeps working.
"""

from __future__ import annotations


class AlertsError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidInputError(AlertsError, ValueError):
    """A value from a user breaks a rule; the message says which and how."""


class NotFoundError(AlertsError, LookupError):
    """A name or id that names nothing."""


class ConflictError(AlertsError):
    """Valid input that the current state refuses (already subscribed, already sent)."""


class UnavailableError(AlertsError):
    """A service the work depends on failed or refused; trying later may work."""
