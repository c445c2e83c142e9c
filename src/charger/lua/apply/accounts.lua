-- accounts.lua: what a changed balance means for an account: the floor, the low-balance
-- notice and auto-recharge.
--
-- Available balance = balance - held. At or below the floor (-credit limit) the account is
-- suspended; above it again, restored. Auto-recharge: when a movement or a hold takes the
-- available balance below an account's threshold, one request is written (deterministic
-- id from the account's request counter); no second one while it is in flight; it ends
-- with a result or a timeout; a failure backs off. Request states live in the account
-- hash under REQUEST_STATE_PREFIX .. request id.

-- What the floor and recharge checks read of an account, in one HMGET after a movement.
local ACCOUNT_STATE_FIELDS = {ACCOUNT_FIELD.balance, ACCOUNT_FIELD.held,
  ACCOUNT_FIELD.credit_limit, ACCOUNT_FIELD.suspended, ACCOUNT_FIELD.notify_email,
  ACCOUNT_FIELD.auto_recharge_enabled, ACCOUNT_FIELD.auto_recharge_threshold,
  ACCOUNT_FIELD.auto_recharge_amount, ACCOUNT_FIELD.recharge_in_flight,
  ACCOUNT_FIELD.recharge_not_before, ACCOUNT_FIELD.currency, ACCOUNT_FIELD.low_balance,
  ACCOUNT_FIELD.low_balance_below}

local function account_state(account_key)
  local v = redis.call('HMGET', account_key, unpack(ACCOUNT_STATE_FIELDS))
  -- a table constructor, in ACCOUNT_STATE_FIELDS' order: cheaper than filling it by name
  return {balance = v[1], held = v[2], credit_limit = v[3], suspended = v[4],
    notify_email = v[5], auto_recharge_enabled = v[6], auto_recharge_threshold = v[7],
    auto_recharge_amount = v[8], recharge_in_flight = v[9], recharge_not_before = v[10],
    currency = v[11], low_balance = v[12], low_balance_below = v[13],
    available = num(v[1]) - num(v[2])}
end

-- account.suspended or account.restored. `effective` is when, in event time, the account
-- crossed its floor: the time string of the record that moved it, or epoch ms. Only when a
-- movement crossed it (`moved`) is its balance after that movement reported.
local function floor_output(suspended, account, cause, effective, st, moved)
  local effective_time, effective_at_ms
  if type(effective) == 'number' then effective_at_ms = effective else effective_time = effective end
  local balance, email
  if moved then balance = num(st.balance) end
  if suspended then email = st.notify_email or '' end
  emit_floor_crossed(suspended, account, cause, st.available, now_ms, effective_time,
    effective_at_ms, balance, email)
end

local function check_floor(account_key, account, cause, effective, st, moved)
  local floor = -num(st.credit_limit)
  if st.available <= floor and st.suspended ~= '1' then
    redis.call('HSET', account_key, ACCOUNT_FIELD.suspended, '1')
    floor_output(true, account, cause, effective, st, moved)
  elseif st.available > floor and st.suspended == '1' then
    redis.call('HSET', account_key, ACCOUNT_FIELD.suspended, '0')
    floor_output(false, account, cause, effective, st, moved)
  end
end

-- One recharge request when the available balance is below the threshold, none in flight
-- and no backoff running.
local function check_recharge(account_key, account, st)
  if st.auto_recharge_enabled ~= '1' then return end
  if st.recharge_in_flight and st.recharge_in_flight ~= '' then return end
  local threshold = num(st.auto_recharge_threshold)
  if st.available >= threshold then return end
  if st.recharge_not_before and now_ms < tonumber(st.recharge_not_before) then return end
  local sequence = redis.call('HINCRBY', account_key, ACCOUNT_FIELD.recharge_sequence, 1)
  local request_id = REQUEST_ID_PREFIX .. account .. '-' .. int(sequence)
  redis.call('HSET', account_key, ACCOUNT_FIELD.recharge_in_flight, request_id,
    REQUEST_STATE_PREFIX .. request_id, REQUEST_STATUS.pending)
  redis.call('ZADD', recharges_key, now_ms + recharge_timeout_ms, account_key)
  emit_recharge_requested(account, request_id, num(st.auto_recharge_amount), st.available,
    num(st.balance), threshold, st.currency or '', now_ms)
end

-- low_balance once per crossing below the account's level; above it again re-arms it.
local function check_low_balance(account_key, account, st)
  local level = num(st.low_balance)
  if level <= 0 then return end
  local below = st.available < level
  if below and st.low_balance_below ~= '1' then
    local crossing = redis.call('HINCRBY', account_key, ACCOUNT_FIELD.low_balance_crossings, 1)
    redis.call('HSET', account_key, ACCOUNT_FIELD.low_balance_below, '1')
    emit_low_balance(account, crossing, st.available, level, st.notify_email or '', now_ms)
  elseif not below and st.low_balance_below == '1' then
    redis.call('HSET', account_key, ACCOUNT_FIELD.low_balance_below, '0')
  end
end

-- What a changed available balance may call for besides the floor.
local function check_thresholds(account_key, account, st)
  check_low_balance(account_key, account, st)
  check_recharge(account_key, account, st)
end

-- The request in flight ended (result or timeout): the account may ask again.
local function end_request(account_key, request_id, status)
  redis.call('HSET', account_key, REQUEST_STATE_PREFIX .. request_id, status)
  if redis.call('HGET', account_key, ACCOUNT_FIELD.recharge_in_flight) == request_id then
    redis.call('HSET', account_key, ACCOUNT_FIELD.recharge_in_flight, '')
    redis.call('ZREM', recharges_key, account_key)
  end
end

-- Exactly-once by event id: false when the id was applied before (a producer resend).
local function first_time(seen_key, fingerprint)
  return redis.call('SET', seen_key, fingerprint, 'NX', 'EX', seen_ttl_s)
end
