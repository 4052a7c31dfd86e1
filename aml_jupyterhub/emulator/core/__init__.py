"""What every emulated service shares: config, state, handler base, faults, TLS, keys, tokens, control, server."""
