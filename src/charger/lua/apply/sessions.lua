-- sessions.lua: a call session as the scripts see it, and when the ticker looks at it.
--
-- In-call holds: a call reserves the cost of the talk time it covers, one debit interval
-- ahead, in whole billing increments. The sessions zset scores each active call by when the
-- ticker must look at it next.

local SESSION_FIELDS = {CALL_FIELD.state, CALL_FIELD.account, CALL_FIELD.account_key,
  CALL_FIELD.account_calls_key, CALL_FIELD.answered_at, CALL_FIELD.covered, CALL_FIELD.held,
  CALL_FIELD.price_per_minute, CALL_FIELD.connect_fee, CALL_FIELD.first_increment,
  CALL_FIELD.next_increment, CALL_FIELD.zero_rate, CALL_FIELD.call_id}

local function load_session(call_key)
  local v = redis.call('HMGET', call_key, unpack(SESSION_FIELDS))
  if not v[1] then return {} end
  -- in SESSION_FIELDS' order
  return {state = v[1], account = v[2], account_key = v[3], account_calls_key = v[4],
    answered_at_ms = num(v[5]), covered_s = num(v[6]), held_micros = num(v[7]),
    price_per_minute_micros = num(v[8]), connect_fee_micros = num(v[9]),
    first_increment_s = num(v[10]), next_increment_s = num(v[11]), zero_rate = v[12],
    call_id = v[13]}
end

-- Seconds of talk time the call's increments bill for `seconds`.
local function billed_for(call, seconds)
  return billed(seconds, call.first_increment_s, call.next_increment_s)
end

-- When the ticker must look at a call again: at its cutoff instant when it is exhausted,
-- a lead ahead of its coverage's end otherwise; never later than the session's TTL, so a
-- lost end is noticed on time.
local function schedule(call_key, answered_at_ms, covered_s, exhausted)
  local ends = answered_at_ms + covered_s * 1000
  local due = exhausted and ends or (ends - hold_lead_ms)
  due = math.min(due, answered_at_ms + max_call_ms)
  redis.call('ZADD', sessions_key, due, call_key)
  return due
end

-- Change what an account's calls hold by `change` micros: in the account, and in the
-- slot's total per currency (the holds gauge reads it instead of every session).
local function change_held(account_key, st, change)
  redis.call('HINCRBY', account_key, ACCOUNT_FIELD.held, change)
  redis.call('HINCRBY', held_key, st.currency or '', change)
  st.available = st.available - change
end

-- Calls that sharing rescheduled during this script call: a tick's list of due calls was
-- read before, so it must not act on one that is no longer due.
local shared_due = {}
