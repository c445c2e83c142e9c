-- holds.lua: a call's hold grows one interval at a time; a call that cannot pay is cut,
-- and a call whose end never comes expires.

-- Reserve one more interval for a call; when the account cannot cover it, share what is
-- left as of `at`. Returns the call's new coverage and whether it is exhausted.
local function grow(call_key, s, at)
  local st = account_state(s.account_key)
  local room = st.available + num(st.credit_limit)
  local want = billed_for(s, s.covered_s + hold_interval_s)
  local hold = cost(s, want)
  if hold - s.held_micros > room then
    local mine = share(s.account_key, s.account_calls_key, s.account, at)[call_key]
    return mine.covered_s, mine.exhausted
  end
  if hold ~= s.held_micros then
    change_held(s.account_key, st, hold - s.held_micros)
    check_thresholds(s.account_key, s.account, st)
  end
  redis.call('HSET', call_key, CALL_FIELD.covered, int(want), CALL_FIELD.held, int(hold))
  schedule(call_key, s.answered_at_ms, want, false)
  return want, false
end

-- A call could not pay for its next increment: cut it at the instant its coverage ends.
-- The account is suspended once no call of it can go on: its money is spent.
local function cut_call(call_key, s, instant)
  redis.call('HSET', call_key, CALL_FIELD.state, CALL_STATUS.cut, CALL_FIELD.cut_at, int(instant))
  redis.call('ZADD', sessions_key, s.answered_at_ms + max_call_ms, call_key)
  local st = account_state(s.account_key)
  emit_call_cut(s.account, s.call_id, instant, now_ms, st.notify_email or '')
  if st.suspended == '1' then return end
  for _, other in ipairs(redis.call('SMEMBERS', s.account_calls_key)) do
    local c = redis.call('HMGET', other, CALL_FIELD.state, CALL_FIELD.zero_rate)
    if c[1] == CALL_STATUS.active and c[2] ~= '1' then return end
  end
  redis.call('HSET', s.account_key, ACCOUNT_FIELD.suspended, '1')
  floor_output(true, s.account, 'cut:' .. s.call_id .. ':', instant, st, false)
end

-- A call older than the longest possible call lost its end: charge what it held.
local function expire(call_key, s)
  local hold = s.held_micros
  if hold > 0 then redis.call('HINCRBY', s.account_key, ACCOUNT_FIELD.held, -hold) end
  local balance = redis.call('HINCRBY', s.account_key, ACCOUNT_FIELD.balance, -hold)
  redis.call('HSET', call_key, CALL_FIELD.state, CALL_STATUS.expired, CALL_FIELD.charged, int(hold),
    CALL_FIELD.held, '0')
  redis.call('EXPIRE', call_key, tombstone_ttl_s)
  redis.call('ZREM', sessions_key, call_key)
  redis.call('SREM', s.account_calls_key, call_key)
  local st = account_state(s.account_key)
  if hold > 0 then redis.call('HINCRBY', held_key, st.currency or '', -hold) end
  emit_session_expired(s.account, s.call_id, -hold, balance, now_ms, s.covered_s,
    s.price_per_minute_micros, st.currency or '')
  check_floor(s.account_key, s.account, 'expired:' .. s.call_id .. ':',
    s.answered_at_ms + max_call_ms, st, true)
end
