-- recharge.lua: the end of a recharge request: its result, or its timeout.

-- A result for request n of an account whose sequence is below n: Redis forgot the
-- movement that made the request (and has not applied it again yet), but the payment
-- system saw the request and took the payment. The request is taken as made, so the
-- credit lands now and the account's next request is n + 1, never a second request n.
local function adopt_request(account_key, number)
  local made = tonumber(redis.call('HGET', account_key, ACCOUNT_FIELD.recharge_sequence) or '0')
  if number <= made then return nil end
  redis.call('HSET', account_key, ACCOUNT_FIELD.recharge_sequence, int(number))
  return REQUEST_STATUS.pending
end

-- The payment system answered: credit the amount, or back off before asking again.
HANDLE[OPCODE.recharge_result] = function(op, fresh)
  local account_key, request_id = op.account_key, op.request_id
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  local status = redis.call('HGET', account_key, REQUEST_STATE_PREFIX .. request_id)
  if not status and op.adopt_number > 0 then
    status = adopt_request(account_key, op.adopt_number)
  end
  if not (status == REQUEST_STATUS.pending or status == REQUEST_STATUS.timed_out) then
    return 0, 1
  end
  if op.status == REQUEST_STATUS.succeeded then
    end_request(account_key, request_id, REQUEST_STATUS.succeeded)
    move(account_key, op.account, op.amount_micros, op.ledger_head, op.kind, op.cause, op.time)
  else
    end_request(account_key, request_id, REQUEST_STATUS.failed)
    redis.call('HSET', account_key, ACCOUNT_FIELD.recharge_not_before,
      int(now_ms + recharge_backoff_ms))
    local st = account_state(account_key)
    emit_recharge_declined(op.account, request_id, op.reason, st.available,
      num(st.auto_recharge_threshold), st.notify_email or '', now_ms)
  end
  return 1, 0
end

-- Requests past their deadline time out; the account may ask again at once.
local function time_out_requests(max_accounts)
  local late = redis.call('ZRANGEBYSCORE', recharges_key, '-inf', now_ms, 'LIMIT', 0, max_accounts)
  for _, account_key in ipairs(late) do
    local f = redis.call('HMGET', account_key, ACCOUNT_FIELD.recharge_in_flight, ACCOUNT_FIELD.account)
    local request_id, account = f[1], f[2]
    redis.call('ZREM', recharges_key, account_key)
    if request_id and request_id ~= '' then
      end_request(account_key, request_id, REQUEST_STATUS.timed_out)
      emit_recharge_timed_out(account, request_id, now_ms)
      check_thresholds(account_key, account, account_state(account_key))
    end
  end
end
