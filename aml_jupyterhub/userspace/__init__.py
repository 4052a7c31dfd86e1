"""Each user's private Azure File Share, mounted on every compute instance they run (docs/user-space.md)."""

from .config import UserSpace
from .naming import share_name
from .policies import ShareAccess, grant, policy_id, renewal_due, revoke, share_access
from .shares import UserSpaceError, ensure_share

__all__ = [
    "ShareAccess",
    "UserSpace",
    "UserSpaceError",
    "ensure_share",
    "grant",
    "policy_id",
    "renewal_due",
    "revoke",
    "share_access",
    "share_name",
]
