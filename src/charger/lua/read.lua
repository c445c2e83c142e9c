-- read.lua: everything planning needs from one slot, in one call.
--
-- One call per slot replaces one command per key: redis-py's per-command cost (packing,
-- parsing, a timeout per reply) was a third of the worker's CPU. Read-only; every key
-- carries the slot's hash tag, so it runs on Redis Cluster.
--
-- KEYS: one key of the slot (routes the call; every key read carries the same tag).
-- ARGV: 1 one MessagePack array {seen-id keys, account keys, call keys, recharge requests
--       as a flat list of account key, field ("rq:<request id>") pairs}: one argument
--       instead of one per key keeps the client's packing cost flat.
--       2 the call hash fields to read, a MessagePack array (CALL_FIELDS of
--       charging/records.py, which decodes them: one list for both languages).
-- Returns {seen values, account fields (3 per account: currency, rate plan,
--          credit limit in micros), call fields (#CALL_FIELDS per call),
--          request states}; a missing value is nil.

local packed = cmsgpack.unpack(ARGV[1])
local seen_keys, acct_keys, call_keys, req = packed[1], packed[2], packed[3], packed[4]
local n_seen = #seen_keys
local CHUNK = 1000 -- keys per MGET: unpack() has a stack limit

local CALL_FIELDS = cmsgpack.unpack(ARGV[2])

local seen = {}
local i = 1
while i <= n_seen do
  local last = math.min(i + CHUNK - 1, n_seen)
  local got = redis.call('MGET', unpack(seen_keys, i, last))
  for j = 1, last - i + 1 do
    seen[#seen + 1] = got[j]
  end
  i = last + 1
end

local accounts = {}
for k = 1, #acct_keys do
  local f = redis.call('HMGET', acct_keys[k], 'cur', 'plan', 'climit')
  accounts[#accounts + 1] = f[1]
  accounts[#accounts + 1] = f[2]
  accounts[#accounts + 1] = f[3]
end

local calls = {}
for k = 1, #call_keys do
  local f = redis.call('HMGET', call_keys[k], unpack(CALL_FIELDS))
  for j = 1, #CALL_FIELDS do
    calls[#calls + 1] = f[j]
  end
end

local requests = {}
for r = 1, #req, 2 do
  requests[#requests + 1] = redis.call('HGET', req[r], req[r + 1])
end

return {seen, accounts, calls, requests}
