"""Repository modes: how content objects are stored on disk."""

from __future__ import annotations

import enum

from sysroot.errors import FormatError


class RepoMode(enum.Enum):
    BARE = "bare"
    ARCHIVE = "archive-z2"
    BARE_USER = "bare-user"
    BARE_USER_ONLY = "bare-user-only"

    @classmethod
    def parse(cls, text: str) -> RepoMode:
        if text == "archive":
            return cls.ARCHIVE
        try:
            return cls(text)
        except ValueError:
            raise FormatError(f"Invalid mode '{text}' in repository configuration") from None

    @property
    def config_string(self) -> str:
        return self.value

    @property
    def is_archive(self) -> bool:
        return self is RepoMode.ARCHIVE

    @property
    def content_extension(self) -> str:
        return "filez" if self is RepoMode.ARCHIVE else "file"

    def stores_ownership(self) -> bool:
        """Whether the mode keeps uid, gid and xattrs of content objects."""
        return self in (RepoMode.BARE, RepoMode.BARE_USER, RepoMode.ARCHIVE)

    def forces_canonical_permissions(self) -> bool:
        return self is RepoMode.BARE_USER_ONLY

    def checkouts_can_hardlink(self, user_mode: bool) -> bool:
        """Whether a checkout may hardlink objects instead of copying them."""
        if self is RepoMode.ARCHIVE:
            return False
        if self is RepoMode.BARE:
            return True
        # bare-user(-only) object files carry the wrong real metadata for a root checkout
        return user_mode or self is RepoMode.BARE_USER_ONLY
