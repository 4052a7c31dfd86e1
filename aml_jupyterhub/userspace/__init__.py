"""Each user's private Azure File Share, mounted on every compute instance they run (docs/user-space.md)."""

from .config import UserSpace
from .naming import share_name
from .shares import ShareAccess, UserSpaceError, ensure_share, share_access

__all__ = ["ShareAccess", "UserSpace", "UserSpaceError", "ensure_share", "share_access", "share_name"]
