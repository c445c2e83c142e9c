-- read.lua: everything planning needs from one slot, in one call.
--
-- One call per slot replaces one command per key: redis-py's per-command cost (packing,
-- parsing, a timeout per reply) was a third of the worker's CPU. Read-only; every key
-- carries the slot's hash tag, so it runs on Redis Cluster.
--
-- KEYS: the seen-id keys, then the account keys, then the call keys, then the account
--       keys of the recharge requests (counts in ARGV).
-- ARGV: 1 number of seen keys, 2 number of account keys, 3 number of call keys,
--       then one account hash field per recharge request ("rq:<request id>").
-- Returns {seen values, account fields (3 per account: currency, rate plan,
--          credit limit in micros), call fields (9 per call, see CALL_FIELDS),
--          request states}; a missing value is nil.

local n_seen = tonumber(ARGV[1])
local n_acct = tonumber(ARGV[2])
local n_call = tonumber(ARGV[3])
local CHUNK = 1000 -- keys per MGET: unpack() has a stack limit

local CALL_FIELDS = {'state', 'dir', 'from', 'to', 't0', 'dur', 'end_id', 'end_time',
  'charged'}

local seen = {}
local i = 1
while i <= n_seen do
  local last = math.min(i + CHUNK - 1, n_seen)
  local got = redis.call('MGET', unpack(KEYS, i, last))
  for j = 1, last - i + 1 do
    seen[#seen + 1] = got[j]
  end
  i = last + 1
end

local accounts = {}
for k = n_seen + 1, n_seen + n_acct do
  local f = redis.call('HMGET', KEYS[k], 'cur', 'plan', 'climit')
  accounts[#accounts + 1] = f[1]
  accounts[#accounts + 1] = f[2]
  accounts[#accounts + 1] = f[3]
end

local calls = {}
for k = n_seen + n_acct + 1, n_seen + n_acct + n_call do
  local f = redis.call('HMGET', KEYS[k], unpack(CALL_FIELDS))
  for j = 1, #CALL_FIELDS do
    calls[#calls + 1] = f[j]
  end
end

local requests = {}
local first_request = n_seen + n_acct + n_call
for r = 4, #ARGV do
  requests[#requests + 1] = redis.call('HGET', KEYS[first_request + r - 3], ARGV[r])
end

return {seen, accounts, calls, requests}
