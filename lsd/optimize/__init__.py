"""Schedule optimisers: each one turns a backbone into a `lsd.Schedule` (JYS, LSD, LSD+)."""
