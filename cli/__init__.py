"""The `mfa-console` command line. Textual loads only when a command opens the dashboard."""
