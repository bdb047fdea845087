"""msmae."""
