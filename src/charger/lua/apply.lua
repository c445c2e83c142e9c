-- apply.lua: apply one batch of planned operations to one slot, atomically.
--
-- Money is integer micro-units. Lua numbers are doubles, exact below 2^53 (9e15 micros);
-- the decoder refuses amounts and balances that could leave that range, and balances are
-- moved with HINCRBY so Redis itself keeps them as 64-bit integers.
--
-- Exactly-once: an op whose source offset is at or below the slot's watermark for its
-- source partition was applied before (redelivery) and is skipped; an op whose event id
-- is already in the seen set is a producer resend and is skipped. Every output (ledger
-- entry, command, notification, DLQ record) is appended to the slot's outbox stream in
-- this same call, so a crash after it loses nothing: the relay publishes the outbox.
--
-- In-call holds: a call reserves the cost of the talk time it covers, one debit interval
-- ahead, in whole billing increments (charging/session.py is the reference of this maths).
-- Available balance = balance - held. When the next interval does not fit above the floor
-- (-credit limit), what is left is shared among the account's calls in the order it is
-- spent (see share below), and each call is due at the exact instant its share runs out;
-- the tick op ('T') cuts it at that instant.
-- The sessions zset scores each active call by when the ticker must look at it next.
--
-- Auto-recharge: when a movement or a hold takes the available balance below an account's
-- threshold, one request is written (deterministic id from the account's request counter);
-- no second one while it is in flight; it ends with a result or a timeout; a failure
-- backs off. Request states live in the account hash as fields "rq:<request id>".
--
-- KEYS: 1 watermark hash, 2 outbox stream, 3 accounts set, 4 sessions zset,
--       5 recharges zset (account keys by in-flight request deadline),
--       6 held hash (currency -> micro-units held by the slot's calls: the holds gauge
--       reads it instead of every session; changed wherever an account's 'held' is).
--       The ops' own keys (count fixed per opcode, see below) travel in the packed
--       argument; every one of them carries this slot's hash tag, like the five above.
--       The tick op reaches call and account keys named inside the sessions zset and call
--       hashes: all of them carry this slot's hash tag.
-- ARGV: 1 now (ms), 2 seen ttl (s), 3 tombstone ttl (s), 4 hold interval (s),
--       5 hold lead (ms), 6 max call length (ms), 7 recharge timeout (ms),
--       8 recharge backoff after a failure (ms), 9 number of sources S,
--       then S pairs (source "topic/partition", highest offset in batch),
--       then one MessagePack array {ops, keys}: ops is the flat list
--       opcode, [source index (1-based), offset,] args... and keys the ops' keys in order.
--       Below, A[...] is an op value ("ARGV" of the op) and K[...] one of its keys.

local wm_key = KEYS[1]
local outbox_key = KEYS[2]
local accounts_key = KEYS[3]
local sessions_key = KEYS[4]
local recharges_key = KEYS[5]
local held_key = KEYS[6]

local now_ms = tonumber(ARGV[1])
local seen_ttl_s = tonumber(ARGV[2])
local tomb_ttl_s = tonumber(ARGV[3])
local interval_s = tonumber(ARGV[4])
local lead_ms = tonumber(ARGV[5])
local max_call_ms = tonumber(ARGV[6])
local rq_timeout_ms = tonumber(ARGV[7])
local rq_backoff_ms = tonumber(ARGV[8])
local n_sources = tonumber(ARGV[9])

local sources = {}
local marks = {}   -- last applied offset per source index
local highest = {} -- highest offset per source index in this batch
local a = 10
for s = 1, n_sources do
  sources[s] = ARGV[a]
  highest[s] = tonumber(ARGV[a + 1])
  marks[s] = tonumber(redis.call('HGET', wm_key, ARGV[a]) or '-1')
  a = a + 2
end

local function int(x)
  return string.format('%d', x)
end

-- Outputs of this call, in order: each a flat field list {'o', opcode, 'k', account, ...}.
-- They go to the outbox as one entry at the end (one XADD instead of one per output).
local outputs = {}
local function emit(...)
  outputs[#outputs + 1] = {...}
end

-- ---- integer maths on doubles, exact below 2^53 ----
local function idiv(x, y) -- floor(x / y), x >= 0, y >= 1
  local q = math.floor(x / y)
  local r = x - q * y
  if r < 0 then q = q - 1 elseif r >= y then q = q + 1 end
  return q
end

local function cdiv(x, y)
  return idiv(x + y - 1, y)
end

-- ---- hold maths (seconds of billed talk time, micro-units) ----
local function billed(secs, i1, i2)
  if secs <= 0 then return 0 end
  if secs <= i1 then return i1 end
  return i1 + cdiv(secs - i1, i2) * i2
end

local function cost(covered, ppm, cf)
  return cdiv(covered * ppm, 60) + cf
end

-- ---- outputs ----
-- What the floor and recharge checks read of an account, in one HMGET after a movement.
local ACCOUNT = {'bal', 'held', 'climit', 'susp', 'email', 'ar_on', 'ar_thr', 'ar_amt', 'rq',
  'rq_after', 'cur'}

local function account_state(acct_key)
  local v = redis.call('HMGET', acct_key, unpack(ACCOUNT))
  -- a table constructor, in ACCOUNT's order: cheaper than filling it name by name
  return {bal = v[1], held = v[2], climit = v[3], susp = v[4], email = v[5], ar_on = v[6],
    ar_thr = v[7], ar_amt = v[8], rq = v[9], rq_after = v[10], cur = v[11],
    avail = tonumber(v[1] or '0') - tonumber(v[2] or '0')}
end

-- account.suspended ('S') or account.restored ('R'). Every command's time is now_ms, when
-- it was decided; `effective` is when, in event time, the account crossed its floor: the
-- time string of the record that moved it, or epoch ms. Only when a movement crossed it
-- (`moved`) is its balance after that movement reported.
local function floor_output(opcode, acct_id, cause, effective, st, moved)
  local out = {'o', opcode, 'k', acct_id, 'a', int(st.avail), 'c', cause, 'm', int(now_ms)}
  if type(effective) == 'number' then
    out[#out + 1], out[#out + 2] = 'x', int(effective)
  else
    out[#out + 1], out[#out + 2] = 'w', effective
  end
  if moved then out[#out + 1], out[#out + 2] = 'l', int(tonumber(st.bal)) end
  if opcode == 'S' then out[#out + 1], out[#out + 2] = 'e', st.email or '' end
  outputs[#outputs + 1] = out
end

-- Suspend when available balance (balance - holds) is at or below the floor (-credit
-- limit); restore when it is above again.
local function check_floor(acct_key, acct_id, cause, effective, st, moved)
  local avail = st.avail
  local floor = -tonumber(st.climit or '0')
  if avail <= floor and st.susp ~= '1' then
    redis.call('HSET', acct_key, 'susp', '1')
    floor_output('S', acct_id, cause, effective, st, moved)
  elseif avail > floor and st.susp == '1' then
    redis.call('HSET', acct_key, 'susp', '0')
    floor_output('R', acct_id, cause, effective, st, moved)
  end
end

-- One recharge request when the available balance is below the threshold, none in flight
-- and no backoff running.
local function check_recharge(acct_key, acct_id, st)
  if st.ar_on ~= '1' or (st.rq and st.rq ~= '') then return end
  local avail = st.avail
  if avail >= tonumber(st.ar_thr or '0') then return end
  if st.rq_after and now_ms < tonumber(st.rq_after) then return end
  local rid = 'rq-' .. acct_id .. '-' .. int(redis.call('HINCRBY', acct_key, 'rq_seq', 1))
  redis.call('HSET', acct_key, 'rq', rid, 'rq:' .. rid, 'pending')
  redis.call('ZADD', recharges_key, now_ms + rq_timeout_ms, acct_key)
  emit('o', 'Q', 'k', acct_id, 'i', rid, 'a', st.ar_amt,
    'b', int(avail), 'l', int(tonumber(st.bal or '0')), 'h', st.ar_thr, 'u', st.cur or '',
    'm', int(now_ms))
end

-- Move money and write its ledger entry (the relay appends balance_after to the head).
local function move(acct_key, acct_id, amount, head, cause, time)
  local bal = redis.call('HINCRBY', acct_key, 'bal', amount)
  emit('o', 'L', 'k', acct_id, 'v', head, 'b', int(bal))
  local st = account_state(acct_key)
  check_floor(acct_key, acct_id, cause, time, st, true)
  check_recharge(acct_key, acct_id, st)
  return st
end

-- The request in flight ended (result or timeout): the account may ask again.
local function end_request(acct_key, rid, state)
  redis.call('HSET', acct_key, 'rq:' .. rid, state)
  if redis.call('HGET', acct_key, 'rq') == rid then
    redis.call('HSET', acct_key, 'rq', '')
    redis.call('ZREM', recharges_key, acct_key)
  end
end

local function first_time(seen_key, fp)
  return redis.call('SET', seen_key, fp, 'NX', 'EX', seen_ttl_s)
end

-- ---- sessions ----
local SESSION = {'state', 'acct', 'akey', 'acs', 't0', 'cov', 'hold', 'ppm', 'cf', 'i1', 'i2',
  'zr', 'call_id'}

local function num(x)
  return tonumber(x or '0')
end

local function load_session(call_key)
  local v = redis.call('HMGET', call_key, unpack(SESSION))
  if not v[1] then return {} end
  -- in SESSION's order
  return {state = v[1], acct = v[2], akey = v[3], acs = v[4], t0 = num(v[5]), cov = num(v[6]),
    hold = num(v[7]), ppm = num(v[8]), cf = num(v[9]), i1 = num(v[10]), i2 = num(v[11]),
    zr = v[12], call_id = v[13]}
end

-- When the ticker must look at a call again: at its cutoff instant when it is exhausted,
-- a lead ahead of its coverage's end otherwise; never later than the session's TTL, so a
-- lost end is noticed on time.
local function schedule(call_key, t0, covered, exhausted)
  local ends = t0 + covered * 1000
  local due = exhausted and ends or (ends - lead_ms)
  due = math.min(due, t0 + max_call_ms)
  redis.call('ZADD', sessions_key, due, call_key)
  return due
end

-- Calls that sharing rescheduled during this script call: a tick's list of due calls was
-- read before, so it must not act on one that is no longer due.
local shared_due = {}

-- ---- sharing what is left among an account's calls (charging/sharing.py is the reference) ----
-- Every call of an account spends the same money. While each call can reserve a whole
-- interval ahead, the reservations never compete. When one cannot, the account's money is
-- shared out again in the order it is really spent: from instant `at`, each call buys its
-- next billing increment at the instant that increment starts (earliest first; answers
-- before purchases at one instant; then earlier answer, then call id), and a call that
-- cannot pay for its next increment is exhausted there: its cutoff instant. Calls still
-- buying at `at` + one interval are covered that far and looked at again before it ends.

-- A binary heap of pending steps ordered by (time, kind, answer, call id).
local function before(x, y)
  if x.time ~= y.time then return x.time < y.time end
  if x.kind ~= y.kind then return x.kind < y.kind end
  if x.call.t0 ~= y.call.t0 then return x.call.t0 < y.call.t0 end
  return x.call.call_id < y.call.call_id
end

local function heap_push(heap, item)
  local i = #heap + 1
  heap[i] = item
  while i > 1 do
    local parent = math.floor(i / 2)
    if not before(heap[i], heap[parent]) then break end
    heap[i], heap[parent] = heap[parent], heap[i]
    i = parent
  end
end

local function heap_pop(heap)
  local top, n = heap[1], #heap
  heap[1] = heap[n]
  heap[n] = nil
  n = n - 1
  local i = 1
  while true do
    local smallest, left, right = i, 2 * i, 2 * i + 1
    if left <= n and before(heap[left], heap[smallest]) then smallest = left end
    if right <= n and before(heap[right], heap[smallest]) then smallest = right end
    if smallest == i then break end
    heap[i], heap[smallest] = heap[smallest], heap[i]
    i = smallest
  end
  return top
end

local ANSWER, PURCHASE = 0, 1

-- Share the account's money among its active calls as of instant `at` (ms); writes every
-- call's coverage, hold and next look; returns call key -> {covered, exhausted}.
local function share(akey, acs, acct, at)
  local st = account_state(akey)
  local pool = tonumber(st.bal or '0') + tonumber(st.climit or '0')
  local window_end = at + interval_s * 1000
  local heap, calls = {}, {}
  for _, ck in ipairs(redis.call('SMEMBERS', acs)) do
    local c = load_session(ck)
    if c.state == 'cut' then
      pool = pool - c.hold
    elseif c.state == 'active' and c.zr ~= '1' then
      c.key = ck
      calls[#calls + 1] = c
      c.exhausted = false
      local free_talk = c.ppm == 0 -- only a connect fee: nothing more to buy
      if free_talk then
        c.new_cov = billed(cdiv(math.max(window_end - c.t0, 1000), 1000), c.i1, c.i2)
      end
      if c.t0 > at then
        if not free_talk then c.new_cov = 0 end
        heap_push(heap, {time = c.t0, kind = ANSWER, call = c})
      elseif free_talk then
        pool = pool - c.cf
      else
        -- the increment in progress at `at` is bought, never beyond what was covered
        local b = billed(cdiv(at - c.t0, 1000), c.i1, c.i2)
        if b > c.cov then b = c.cov end
        c.new_cov = b
        pool = pool - cost(b, c.ppm, c.cf)
        heap_push(heap, {time = c.t0 + b * 1000, kind = PURCHASE, call = c})
      end
    end
  end
  while #heap > 0 do
    local step = heap_pop(heap)
    local c = step.call
    if step.kind == ANSWER then
      pool = pool - c.cf -- answered: the connect fee is spent whatever is left
      if c.ppm > 0 then heap_push(heap, {time = c.t0, kind = PURCHASE, call = c}) end
    elseif step.time < window_end then
      local next_cov = billed(c.new_cov + 1, c.i1, c.i2)
      local price = cost(next_cov, c.ppm, c.cf) - cost(c.new_cov, c.ppm, c.cf)
      if price <= pool then
        pool = pool - price
        c.new_cov = next_cov
        heap_push(heap, {time = c.t0 + next_cov * 1000, kind = PURCHASE, call = c})
      else
        c.exhausted = true
      end
    end
  end
  local held_change, shared = 0, {}
  for _, c in ipairs(calls) do
    local hold = cost(c.new_cov, c.ppm, c.cf)
    held_change = held_change + hold - c.hold
    redis.call('HSET', c.key, 'cov', int(c.new_cov), 'hold', int(hold))
    shared_due[c.key] = schedule(c.key, c.t0, c.new_cov, c.exhausted)
    shared[c.key] = {c.new_cov, c.exhausted}
  end
  if held_change ~= 0 then
    redis.call('HINCRBY', akey, 'held', held_change)
    redis.call('HINCRBY', held_key, st.cur or '', held_change)
    st.avail = st.avail - held_change
    check_recharge(akey, acct, st)
  end
  return shared
end

-- Reserve one more interval for a call; when the account cannot cover it, share what is
-- left as of `at`. Returns the call's new coverage and whether it is exhausted.
local function grow(call_key, s, at)
  local st = account_state(s.akey)
  local room = st.avail + tonumber(st.climit or '0')
  local want = billed(s.cov + interval_s, s.i1, s.i2)
  local hold = cost(want, s.ppm, s.cf)
  if hold - s.hold > room then
    local mine = share(s.akey, s.acs, s.acct, at)[call_key]
    return mine[1], mine[2]
  end
  if hold ~= s.hold then
    redis.call('HINCRBY', s.akey, 'held', hold - s.hold)
    redis.call('HINCRBY', held_key, st.cur or '', hold - s.hold)
    st.avail = st.avail - (hold - s.hold)
    check_recharge(s.akey, s.acct, st)
  end
  redis.call('HSET', call_key, 'cov', int(want), 'hold', int(hold))
  schedule(call_key, s.t0, want, false)
  return want, false
end

-- A call could not pay for its next increment: cut it at the instant its coverage ends.
-- The account is suspended once no call of it can go on: its money is spent.
local function cut_call(call_key, s, instant)
  redis.call('HSET', call_key, 'state', 'cut', 'cut_at', int(instant))
  redis.call('ZADD', sessions_key, s.t0 + max_call_ms, call_key)
  local f = redis.call('HMGET', s.akey, 'bal', 'held', 'susp', 'email')
  local email = f[4] or ''
  emit('o', 'C', 'k', s.acct, 'c', s.call_id, 'x', int(instant), 'm', int(now_ms), 'e', email)
  if f[3] == '1' then return end
  for _, ck in ipairs(redis.call('SMEMBERS', s.acs)) do
    local c = redis.call('HMGET', ck, 'state', 'zr')
    if c[1] == 'active' and c[2] ~= '1' then return end
  end
  redis.call('HSET', s.akey, 'susp', '1')
  floor_output('S', s.acct, 'cut:' .. s.call_id .. ':', instant,
    {avail = tonumber(f[1]) - tonumber(f[2]), bal = f[1], email = email}, false)
end

-- A call older than the longest possible call lost its end: charge what it held.
local function expire(call_key, s)
  local hold = s.hold
  if hold > 0 then redis.call('HINCRBY', s.akey, 'held', -hold) end
  local bal = redis.call('HINCRBY', s.akey, 'bal', -hold)
  redis.call('HSET', call_key, 'state', 'expired', 'charged', int(hold), 'hold', '0')
  redis.call('EXPIRE', call_key, tomb_ttl_s)
  redis.call('ZREM', sessions_key, call_key)
  redis.call('SREM', s.acs, call_key)
  local st = account_state(s.akey)
  if hold > 0 then redis.call('HINCRBY', held_key, st.cur or '', -hold) end
  emit('o', 'X', 'k', s.acct, 'c', s.call_id, 'a', int(-hold),
    'b', int(bal), 'm', int(now_ms), 'q', int(s.cov), 'r', int(s.ppm), 'u', st.cur or '')
  check_floor(s.akey, s.acct, 'expired:' .. s.call_id .. ':', s.t0 + max_call_ms, st, true)
end

local function time_out_requests(max_accounts)
  local late = redis.call('ZRANGEBYSCORE', recharges_key, '-inf', now_ms, 'LIMIT', 0, max_accounts)
  for _, acct_key in ipairs(late) do
    local f = redis.call('HMGET', acct_key, 'rq', 'id')
    redis.call('ZREM', recharges_key, acct_key)
    if f[1] and f[1] ~= '' then
      end_request(acct_key, f[1], 'timed_out')
      emit('o', 'T', 'k', f[2], 'i', f[1], 'm', int(now_ms))
      check_recharge(acct_key, f[2], account_state(acct_key))
    end
  end
end

local function tick(max_sessions)
  time_out_requests(max_sessions)
  local due = redis.call('ZRANGEBYSCORE', sessions_key, '-inf', now_ms, 'LIMIT', 0, max_sessions)
  local cuts = 0
  for _, ck in ipairs(due) do
    local s = load_session(ck)
    if s.state ~= 'active' and s.state ~= 'cut' then
      redis.call('ZREM', sessions_key, ck)
    elseif now_ms >= s.t0 + max_call_ms then
      expire(ck, s)
    elseif s.state == 'cut' or s.zr == '1' then
      redis.call('ZADD', sessions_key, s.t0 + max_call_ms, ck)
    elseif (shared_due[ck] or now_ms) <= now_ms then
      local covered, exhausted = grow(ck, s, math.min(now_ms, s.t0 + s.cov * 1000))
      local ends = s.t0 + covered * 1000
      if exhausted and ends <= now_ms then
        cut_call(ck, s, ends)
        cuts = cuts + 1
      end
    end
  end
  return #due, cuts
end

-- The ops and their keys come packed in one MessagePack argument: one argument per op
-- value made the client's packing cost more than the script itself.
local packed = cmsgpack.unpack(ARGV[a])
local A, K = packed[1], packed[2]
local applied, skipped = 0, 0
local k = 1
local n = #A
a = 1
while a <= n do
  local op = A[a]
  if op == 'T' then
    -- tick the slot's due sessions: ARGV max sessions
    local looked, cuts = tick(tonumber(A[a + 1]))
    applied = applied + looked
    skipped = skipped + cuts
    a = a + 2
  else
    local src = tonumber(A[a + 1])
    local fresh = tonumber(A[a + 2]) > marks[src]
    local p = a + 3
    if op == 'U' then
      -- usage or credit: KEYS acct, seen; ARGV fp, amount, ledger head, account, cause, time
      if fresh and first_time(K[k + 1], A[p]) then
        move(K[k], A[p + 3], A[p + 1], A[p + 2], A[p + 4], A[p + 5])
        applied = applied + 1
      else
        skipped = skipped + 1
      end
      k = k + 2
      a = p + 6
    elseif op == 'E' then
      -- settle a call: release its hold, charge the final cost. KEYS acct, seen, call,
      -- account calls; ARGV fp, amount, ledger head, account, cause, time
      local call_key = K[k + 2]
      local c = fresh and first_time(K[k + 1], A[p]) and redis.call('HMGET', call_key, 'state', 'hold')
      if c and c[1] ~= 'ended' then
        local held_here = tonumber(c[2] or '0')
        if held_here > 0 then redis.call('HINCRBY', K[k], 'held', -held_here) end
        local st = move(K[k], A[p + 3], A[p + 1], A[p + 2], A[p + 4], A[p + 5])
        if held_here > 0 then redis.call('HINCRBY', held_key, st.cur or '', -held_here) end
        redis.call('HSET', call_key, 'state', 'ended', 'amount', A[p + 1], 'hold', '0')
        redis.call('EXPIRE', call_key, tomb_ttl_s)
        redis.call('SREM', K[k + 3], call_key)
        redis.call('ZREM', sessions_key, call_key)
        applied = applied + 1
      else
        skipped = skipped + 1
      end
      k = k + 4
      a = p + 6
    elseif op == 'S' then
      -- open a call session and place its first hold. KEYS acct, seen, call, account calls;
      -- ARGV fp, call id, answer ms, direction, from, to, account,
      -- price per minute, connect fee, first increment, next increment,
      -- prefix, rate plan id, plan version (the rate fixed at answer: the end is charged
      -- with these fields, see CALL_FIELDS in charging/records.py)
      local call_key = K[k + 2]
      if fresh and first_time(K[k + 1], A[p]) and redis.call('EXISTS', call_key) == 0 then
        local ppm, cf = tonumber(A[p + 7]), tonumber(A[p + 8])
        local zr = (ppm == 0 and cf == 0) and '1' or '0'
        redis.call('HSET', call_key, 'state', 'active', 'call_id', A[p + 1], 't0', A[p + 2],
          'dir', A[p + 3], 'from', A[p + 4], 'to', A[p + 5], 'acct', A[p + 6],
          'akey', K[k], 'acs', K[k + 3], 'ppm', A[p + 7], 'cf', A[p + 8],
          'i1', A[p + 9], 'i2', A[p + 10], 'cov', '0', 'hold', '0', 'zr', zr,
          'prefix', A[p + 11], 'rplan', A[p + 12], 'rver', A[p + 13])
        redis.call('SADD', K[k + 3], call_key)
        if zr == '1' then
          redis.call('ZADD', sessions_key, tonumber(A[p + 2]) + max_call_ms, call_key)
        else
          -- what load_session would read back from the hash just written
          local t0 = tonumber(A[p + 2])
          grow(call_key, {state = 'active', acct = A[p + 6], akey = K[k], acs = K[k + 3],
            t0 = t0, cov = 0, hold = 0, ppm = ppm, cf = cf,
            i1 = tonumber(A[p + 9]), i2 = tonumber(A[p + 10]), zr = zr, call_id = A[p + 1]}, t0)
        end
        applied = applied + 1
      else
        skipped = skipped + 1
      end
      k = k + 4
      a = p + 14
    elseif op == 'P' then
      -- an end with no start and no route yet: park it until the start arrives.
      -- KEYS seen, call; ARGV fp, duration ms, end event id, end time
      local call_key = K[k + 1]
      if fresh and first_time(K[k], A[p]) and redis.call('EXISTS', call_key) == 0 then
        redis.call('HSET', call_key, 'state', 'pending_end', 'dur', A[p + 1],
          'end_id', A[p + 2], 'end_time', A[p + 3])
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
      local acct_key = K[k]
      if fresh and first_time(K[k + 1], A[p]) then
        local created = redis.call('HSETNX', acct_key, 'bal', '0') == 1
        if created then
          redis.call('HSET', acct_key, 'id', A[p + 1], 'held', '0', 'susp', '0', 'open', '0',
            'created', int(now_ms))
          redis.call('SADD', accounts_key, A[p + 1])
        end
        redis.call('HSET', acct_key, 'cur', A[p + 2], 'plan', A[p + 3], 'climit', A[p + 4],
          'ar_on', A[p + 5], 'ar_thr', A[p + 6], 'ar_amt', A[p + 7], 'email', A[p + 8])
        -- A new account waits for its first movement; a changed credit limit may move the floor.
        if not created then
          local st = account_state(acct_key)
          check_floor(acct_key, A[p + 1], A[p + 9], A[p + 10], st, false)
          check_recharge(acct_key, A[p + 1], st)
        end
        applied = applied + 1
      else
        skipped = skipped + 1
      end
      k = k + 2
      a = p + 11
    elseif op == 'G' then
      -- a recharge result: KEYS acct, seen; ARGV fp, request id, status, amount,
      -- ledger head, account, cause, time, reason
      local acct_key, rid = K[k], A[p + 1]
      local state = redis.call('HGET', acct_key, 'rq:' .. rid)
      if fresh and first_time(K[k + 1], A[p]) and (state == 'pending' or state == 'timed_out') then
        if A[p + 2] == 'succeeded' then
          end_request(acct_key, rid, 'succeeded')
          move(acct_key, A[p + 5], A[p + 3], A[p + 4], A[p + 6], A[p + 7])
        else
          end_request(acct_key, rid, 'failed')
          redis.call('HSET', acct_key, 'rq_after', int(now_ms + rq_backoff_ms))
          local f = redis.call('HMGET', acct_key, 'bal', 'held', 'ar_thr', 'email')
          emit('o', 'F', 'k', A[p + 5], 'i', rid,
            'r', A[p + 8], 'b', int(tonumber(f[1]) - tonumber(f[2])), 'h', f[3] or '0',
            'e', f[4] or '', 'm', int(now_ms))
        end
        applied = applied + 1
      else
        skipped = skipped + 1
      end
      k = k + 2
      a = p + 9
    elseif op == 'K' then
      -- remember an event that moves nothing (a late start of a settled call): KEYS seen
      if fresh then
        first_time(K[k], A[p])
      end
      skipped = skipped + 1
      k = k + 1
      a = p + 1
    elseif op == 'D' then
      -- refused record to the DLQ: no keys; ARGV kafka key, original bytes, headers (JSON)
      if fresh then
        emit('o', 'D', 'k', A[p], 'v', A[p + 1], 'h', A[p + 2])
        applied = applied + 1
      else
        skipped = skipped + 1
      end
      a = p + 3
    else
      return redis.error_reply('apply.lua: unknown opcode ' .. tostring(op))
    end
  end
end

if #outputs > 0 then
  redis.call('XADD', outbox_key, '*', 'p', cmsgpack.pack(outputs))
end

for s = 1, n_sources do
  if highest[s] > marks[s] then
    redis.call('HSET', wm_key, sources[s], int(highest[s]))
  end
end

return {applied, skipped}
