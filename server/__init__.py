"""The verification service: what other systems ask whether a code is right (HTTP; RADIUS next)."""
