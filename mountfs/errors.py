"""The one exception hierarchy of dsmount.

Every error a user can cause or meet derives from ``MountfsError``; the CLI turns
it into a one-line message and the class's ``exit_code``. Anything else escaping
the library is a bug and is reported as such.
"""

from __future__ import annotations


class MountfsError(Exception):
    """Base of every error dsmount raises on purpose."""

    exit_code = 1


class UsageError(MountfsError):
    """The arguments cannot be acted on (bad flag combination, bad value)."""

    exit_code = 2


class NotFoundError(MountfsError):
    """Something named by the user does not exist."""

    exit_code = 3


class DatasetNotFoundError(NotFoundError):
    """No version matches the id, id prefix or project/name[@version] given."""


class PathNotFoundError(NotFoundError):
    """A local path or dataset path given by the user does not exist."""


class AmbiguousReferenceError(MountfsError):
    """An id prefix or project/name matches several versions where one is needed."""

    exit_code = 3


class StateError(MountfsError):
    """The version is in the wrong state for the operation."""

    exit_code = 4


class VersionClosedError(StateError):
    """A closed version was asked to change its content; closed versions are immutable."""


class NotClosedError(StateError):
    """A draft was used where a closed version is needed (a parent, get, mount)."""


class DirtyError(StateError):
    """The draft has files not uploaded yet and the operation does not upload them."""


class DependentsError(StateError):
    """Deleting would orphan versions that list this one as a parent."""


class PublishedError(StateError):
    """A published version is protected; the operation needs --force."""


class StoreError(MountfsError):
    """The store or data location cannot be read or written."""

    exit_code = 5


class StoreUnavailableError(StoreError):
    """The store answered with an error other than not-found, or not at all."""


class ObjectMissingError(StoreError):
    """An object the registry refers to is missing from the store."""


class IntegrityError(MountfsError):
    """Bytes or metadata fail verification (CRC-32, SHA-256, size, format): never served as data."""

    exit_code = 6


class UnsafePathError(IntegrityError):
    """A path in a zip or file table would escape the target folder."""


class FileChangedError(MountfsError):
    """A source file changed between add and upload; add it again."""

    exit_code = 4


class MountError(MountfsError):
    """A mount could not be started, answered or stopped."""

    exit_code = 7
