"""What runs on a compute instance: the startup agent and its hub credential (docs/user-space.md)."""
