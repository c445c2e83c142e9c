-- calls.lua: a call is answered, ends, or ends before its start arrived.

-- Open a call session at the rate fixed at answer and place its first hold. The end is
-- charged with the stored rate (CALL_FIELDS of charger/protocol/fields.py reads it back).
HANDLE[OPCODE.start_call] = function(op, fresh)
  local call_key = op.call_key
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  if redis.call('EXISTS', call_key) == 1 then return 0, 1 end
  local zero_rate = (op.price_per_minute_micros == 0 and op.connect_fee_micros == 0) and '1' or '0'
  redis.call('HSET', call_key, CALL_FIELD.state, CALL_STATUS.active, CALL_FIELD.call_id, op.call_id,
    CALL_FIELD.answered_at, op.answered_at_ms, CALL_FIELD.direction, op.direction,
    CALL_FIELD.from, op.number_from, CALL_FIELD.to, op.number_to, CALL_FIELD.account, op.account,
    CALL_FIELD.account_key, op.account_key, CALL_FIELD.account_calls_key, op.account_calls_key,
    CALL_FIELD.price_per_minute, op.price_per_minute_micros,
    CALL_FIELD.connect_fee, op.connect_fee_micros,
    CALL_FIELD.first_increment, op.first_increment_s, CALL_FIELD.next_increment, op.next_increment_s,
    CALL_FIELD.covered, '0', CALL_FIELD.held, '0', CALL_FIELD.zero_rate, zero_rate,
    CALL_FIELD.prefix, op.prefix, CALL_FIELD.rate_plan, op.rate_plan,
    CALL_FIELD.rate_plan_version, op.rate_plan_version)
  redis.call('SADD', op.account_calls_key, call_key)
  if zero_rate == '1' then
    redis.call('ZADD', sessions_key, op.answered_at_ms + max_call_ms, call_key)
  else
    -- what load_session would read back from the hash just written
    grow(call_key, {state = CALL_STATUS.active, account = op.account,
      account_key = op.account_key, account_calls_key = op.account_calls_key,
      answered_at_ms = op.answered_at_ms, covered_s = 0, held_micros = 0,
      price_per_minute_micros = op.price_per_minute_micros,
      connect_fee_micros = op.connect_fee_micros, first_increment_s = op.first_increment_s,
      next_increment_s = op.next_increment_s, zero_rate = zero_rate, call_id = op.call_id},
      op.answered_at_ms)
  end
  return 1, 0
end

-- A call ended: release its hold, charge its final cost.
HANDLE[OPCODE.settle_call] = function(op, fresh)
  local call_key, account_key = op.call_key, op.account_key
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  local c = redis.call('HMGET', call_key, CALL_FIELD.state, CALL_FIELD.held)
  if c[1] == CALL_STATUS.ended then return 0, 1 end
  local held_here = num(c[2])
  if held_here > 0 then redis.call('HINCRBY', account_key, ACCOUNT_FIELD.held, -held_here) end
  local st = move(account_key, op.account, op.amount_micros, op.ledger_head, op.kind, op.cause,
    op.time)
  if held_here > 0 then redis.call('HINCRBY', held_key, st.currency or '', -held_here) end
  redis.call('HSET', call_key, CALL_FIELD.state, CALL_STATUS.ended,
    CALL_FIELD.amount, op.amount_micros, CALL_FIELD.held, '0')
  redis.call('EXPIRE', call_key, tombstone_ttl_s)
  redis.call('SREM', op.account_calls_key, call_key)
  redis.call('ZREM', sessions_key, call_key)
  return 1, 0
end

-- An end with no start and no route yet: park it until the start arrives.
HANDLE[OPCODE.park_end] = function(op, fresh)
  local call_key = op.call_key
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  if redis.call('EXISTS', call_key) == 1 then return 0, 1 end
  redis.call('HSET', call_key, CALL_FIELD.state, CALL_STATUS.pending_end,
    CALL_FIELD.duration, op.duration_ms, CALL_FIELD.end_id, op.end_id,
    CALL_FIELD.end_time, op.end_time)
  redis.call('EXPIRE', call_key, tombstone_ttl_s)
  return 1, 0
end
