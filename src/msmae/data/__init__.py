"""Task datasets built from released annotation files (SLT: :mod:`msmae.data.slt`)."""
