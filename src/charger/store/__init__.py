"""Redis adapter: keys, scripts, reads and the batch apply."""
