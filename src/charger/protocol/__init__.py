"""The Python↔Lua protocol, in one place and pure (no I/O).

What the charging core and the Redis scripts say to each other: the keys (`keys`), the
fields of the hashes both sides read and write (`fields`), the operations the core plans
for apply.lua (`ops`), the outputs apply.lua leaves in a slot's outbox (`outputs`), and
the Lua prelude generated from those definitions (`lua`), so the scripts read named
fields and never count positions by hand. The core imports this package; it never
imports the Redis adapter (`charger.store`).
"""
