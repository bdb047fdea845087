"""Sub-commands of the ``msmae`` command line (one module each, see :mod:`msmae.cli`)."""
