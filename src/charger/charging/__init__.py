"""The charging core: what each record does to money, with no I/O."""
