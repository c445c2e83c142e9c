-- read.lua: everything planning needs from one slot, in one call.
--
-- One call per slot replaces one command per key: redis-py's per-command cost (packing,
-- parsing, a timeout per reply) was a third of the worker's CPU. Read-only; every key
-- carries the slot's hash tag, so it runs on Redis Cluster.
--
-- KEYS: one key of the slot (routes the call; every key read carries the same tag).
-- ARGV: 1 one MessagePack array {seen-id keys, account keys, call keys, recharge requests
--       as a flat list of account key, field (REQUEST_STATE_PREFIX .. request id) pairs}:
--       one argument instead of one per key keeps the client's packing cost flat.
-- Returns {seen values, account fields (#ACCOUNT_SETTINGS_FIELDS per account), call
--          fields (#CALL_READ_FIELDS per call), request states}; a missing value is nil.
-- The field lists come from the generated prelude (charger/protocol/fields.py).

local n_seen = #seen_keys
local CHUNK = 1000 -- keys per MGET: unpack() has a stack limit

-- Appends `count` values of `got` to `out`: each reply's values, flattened in key order.
local function append(out, got, count)
  for j = 1, count do
    out[#out + 1] = got[j]
  end
end

local seen = {}
local i = 1
while i <= n_seen do
  local last = math.min(i + CHUNK - 1, n_seen)
  append(seen, redis.call('MGET', unpack(seen_keys, i, last)), last - i + 1)
  i = last + 1
end

local accounts = {}
for k = 1, #account_keys do
  local got = redis.call('HMGET', account_keys[k], unpack(ACCOUNT_SETTINGS_FIELDS))
  append(accounts, got, #ACCOUNT_SETTINGS_FIELDS)
end

local calls = {}
for k = 1, #call_keys do
  append(calls, redis.call('HMGET', call_keys[k], unpack(CALL_READ_FIELDS)), #CALL_READ_FIELDS)
end

local requests = {}
for r = 1, #request_fields, 2 do
  requests[#requests + 1] = redis.call('HGET', request_fields[r], request_fields[r + 1])
end

return {seen, accounts, calls, requests}
