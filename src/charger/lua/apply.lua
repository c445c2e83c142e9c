-- apply.lua: apply one batch of planned operations to one slot, atomically.
--
-- Money is integer micro-units. Lua numbers are doubles, exact below 2^53 (9e15 micros);
-- the decoder refuses amounts and balances that could leave that range, and balances are
-- moved with HINCRBY so Redis itself keeps them as 64-bit integers.
--
-- Exactly-once: an op whose source offset is at or below the slot's watermark for its
-- source partition was applied before (redelivery) and is skipped; an op whose event id
-- is already in the seen set is a producer resend and is skipped. Every output (ledger
-- entry, command, DLQ record) is appended to the slot's outbox stream in this same call,
-- so a crash after this script loses nothing: the relay publishes what is in the outbox.
--
-- KEYS: 1 watermark hash, 2 outbox stream, 3 accounts set, 4 sessions zset,
--       then the keys of each op in order (count fixed per opcode, see OPS below).
-- ARGV: 1 now (ms), 2 seen ttl (s), 3 tombstone ttl (s), 4 number of sources S,
--       then S pairs (source "topic/partition", highest offset in batch),
--       then ops: opcode, source index (1-based), offset, args...

local wm_key = KEYS[1]
local outbox_key = KEYS[2]
local accounts_key = KEYS[3]
local sessions_key = KEYS[4]

local now_ms = ARGV[1]
local seen_ttl_s = tonumber(ARGV[2])
local tomb_ttl_s = tonumber(ARGV[3])
local n_sources = tonumber(ARGV[4])

local sources = {}
local marks = {}   -- last applied offset per source index
local highest = {} -- highest offset per source index in this batch
local a = 5
for s = 1, n_sources do
  sources[s] = ARGV[a]
  highest[s] = tonumber(ARGV[a + 1])
  marks[s] = tonumber(redis.call('HGET', wm_key, ARGV[a]) or '-1')
  a = a + 2
end

local function int(x)
  return string.format('%d', x)
end

-- Suspend when available balance (balance - holds) is at or below the floor (-credit
-- limit); restore when it is above again. Each transition writes one command to the outbox.
local function check_floor(acct_key, acct_id, cause, time, bal)
  local f = redis.call('HMGET', acct_key, 'held', 'climit', 'susp')
  local avail = bal - tonumber(f[1] or '0')
  local floor = -tonumber(f[2] or '0')
  if avail <= floor and f[3] ~= '1' then
    redis.call('HSET', acct_key, 'susp', '1')
    redis.call('XADD', outbox_key, '*', 'o', 'S', 'k', acct_id, 'b', int(avail), 'c', cause, 't', time)
  elseif avail > floor and f[3] == '1' then
    redis.call('HSET', acct_key, 'susp', '0')
    redis.call('XADD', outbox_key, '*', 'o', 'R', 'k', acct_id, 'b', int(avail), 'c', cause, 't', time)
  end
end

-- Move money and write its ledger entry (the relay appends balance_after to the head).
local function move(acct_key, acct_id, amount, head, cause, time)
  local bal = redis.call('HINCRBY', acct_key, 'bal', amount)
  redis.call('XADD', outbox_key, '*', 'o', 'L', 'k', acct_id, 'v', head, 'b', int(bal))
  check_floor(acct_key, acct_id, cause, time, bal)
end

local function first_time(seen_key, fp)
  return redis.call('SET', seen_key, fp, 'NX', 'EX', seen_ttl_s)
end

local applied, skipped = 0, 0
local k = 5
local n = #ARGV
while a <= n do
  local op = ARGV[a]
  local src = tonumber(ARGV[a + 1])
  local fresh = tonumber(ARGV[a + 2]) > marks[src]
  local p = a + 3
  if op == 'U' then
    -- usage or credit: KEYS acct, seen; ARGV fp, amount, ledger head, account, cause, time
    if fresh and first_time(KEYS[k + 1], ARGV[p]) then
      move(KEYS[k], ARGV[p + 3], ARGV[p + 1], ARGV[p + 2], ARGV[p + 4], ARGV[p + 5])
      applied = applied + 1
    else
      skipped = skipped + 1
    end
    k = k + 2
    a = p + 6
  elseif op == 'E' then
    -- settle a call: KEYS acct, seen, call, account calls;
    -- ARGV fp, amount, ledger head, account, cause, time, session member
    local call_key = KEYS[k + 2]
    if fresh and first_time(KEYS[k + 1], ARGV[p]) and redis.call('HGET', call_key, 'state') ~= 'ended' then
      move(KEYS[k], ARGV[p + 3], ARGV[p + 1], ARGV[p + 2], ARGV[p + 4], ARGV[p + 5])
      redis.call('HSET', call_key, 'state', 'ended', 'amount', ARGV[p + 1])
      redis.call('EXPIRE', call_key, tomb_ttl_s)
      redis.call('SREM', KEYS[k + 3], ARGV[p + 6])
      redis.call('ZREM', sessions_key, ARGV[p + 6])
      applied = applied + 1
    else
      skipped = skipped + 1
    end
    k = k + 4
    a = p + 7
  elseif op == 'S' then
    -- open a call session: KEYS acct, seen, call, account calls;
    -- ARGV fp, call id, answer ms, direction, from, to, session member
    local call_key = KEYS[k + 2]
    if fresh and first_time(KEYS[k + 1], ARGV[p]) and redis.call('EXISTS', call_key) == 0 then
      redis.call('HSET', call_key, 'state', 'active', 'call_id', ARGV[p + 1], 't0', ARGV[p + 2],
        'dir', ARGV[p + 3], 'from', ARGV[p + 4], 'to', ARGV[p + 5])
      redis.call('SADD', KEYS[k + 3], ARGV[p + 1])
      redis.call('ZADD', sessions_key, ARGV[p + 2], ARGV[p + 6])
      applied = applied + 1
    else
      skipped = skipped + 1
    end
    k = k + 4
    a = p + 7
  elseif op == 'P' then
    -- an end with no start and no route yet: park it until the start arrives.
    -- KEYS seen, call; ARGV fp, duration ms, end event id, end time
    local call_key = KEYS[k + 1]
    if fresh and first_time(KEYS[k], ARGV[p]) and redis.call('EXISTS', call_key) == 0 then
      redis.call('HSET', call_key, 'state', 'pending_end', 'dur', ARGV[p + 1],
        'end_id', ARGV[p + 2], 'end_time', ARGV[p + 3])
      redis.call('EXPIRE', call_key, tomb_ttl_s)
      applied = applied + 1
    else
      skipped = skipped + 1
    end
    k = k + 2
    a = p + 4
  elseif op == 'A' then
    -- upsert settings: KEYS acct, seen; ARGV fp, account, currency, plan, credit limit,
    -- auto-recharge on, threshold, amount, e-mail, cause, time
    local acct_key = KEYS[k]
    if fresh and first_time(KEYS[k + 1], ARGV[p]) then
      local created = redis.call('HSETNX', acct_key, 'bal', '0') == 1
      if created then
        redis.call('HSET', acct_key, 'held', '0', 'susp', '0', 'open', '0', 'created', now_ms)
        redis.call('SADD', accounts_key, ARGV[p + 1])
      end
      redis.call('HSET', acct_key, 'cur', ARGV[p + 2], 'plan', ARGV[p + 3], 'climit', ARGV[p + 4],
        'ar_on', ARGV[p + 5], 'ar_thr', ARGV[p + 6], 'ar_amt', ARGV[p + 7], 'email', ARGV[p + 8])
      -- A new account waits for its first movement; a changed credit limit may move the floor.
      if not created then
        check_floor(acct_key, ARGV[p + 1], ARGV[p + 9], ARGV[p + 10],
          tonumber(redis.call('HGET', acct_key, 'bal')))
      end
      applied = applied + 1
    else
      skipped = skipped + 1
    end
    k = k + 2
    a = p + 11
  elseif op == 'K' then
    -- remember an event that moves nothing (a late start of a settled call): KEYS seen; ARGV fp
    if fresh then
      first_time(KEYS[k], ARGV[p])
    end
    skipped = skipped + 1
    k = k + 1
    a = p + 1
  elseif op == 'D' then
    -- refused record to the DLQ: no keys; ARGV kafka key, original bytes, headers (JSON)
    if fresh then
      redis.call('XADD', outbox_key, '*', 'o', 'D', 'k', ARGV[p], 'v', ARGV[p + 1], 'h', ARGV[p + 2])
      applied = applied + 1
    else
      skipped = skipped + 1
    end
    a = p + 3
  else
    return redis.error_reply('apply.lua: unknown opcode ' .. tostring(op))
  end
end

for s = 1, n_sources do
  if highest[s] > marks[s] then
    redis.call('HSET', wm_key, sources[s], int(highest[s]))
  end
end

return {applied, skipped}
