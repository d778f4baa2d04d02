"""Drop-in APIs of other memory libraries on memq. :mod:`memq.compat.mem0`: mem0's ``Memory``."""
