-- money.lua: movements of money and account settings.

-- Move money and write its ledger entry (the relay appends balance_after to the head).
local function move(account_key, account, amount, ledger_head, kind, cause, time)
  local balance = redis.call('HINCRBY', account_key, ACCOUNT_FIELD.balance, amount)
  local st = account_state(account_key)
  emit_ledger_entry(account, ledger_head, balance, kind, st.currency or '', amount, time)
  check_floor(account_key, account, cause, time, st, true)
  check_thresholds(account_key, account, st)
  return st
end

-- Usage or a credit.
HANDLE[OPCODE.move] = function(op, fresh)
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  move(op.account_key, op.account, op.amount_micros, op.ledger_head, op.kind, op.cause, op.time)
  return 1, 0
end

-- A one-off fee: charged like usage (below the floor too, then the account is suspended),
-- unless it requires funds and would take the available balance below the floor. Either
-- way the fee id gets exactly one result: a resend is skipped by its id.
HANDLE[OPCODE.charge_fee] = function(op, fresh)
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  if op.require_funds == 1 then
    local st = account_state(op.account_key)
    if st.available + op.amount_micros < -num(st.credit_limit) then
      emit_fee_refused(op.account, op.fee_id, 'insufficient_funds', st.available, now_ms)
      return 1, 0
    end
  end
  local st = move(op.account_key, op.account, op.amount_micros, op.ledger_head, op.kind,
    op.cause, op.time)
  emit_fee_applied(op.account, op.fee_id, op.ledger_entry_id, -op.amount_micros,
    num(st.balance), now_ms)
  return 1, 0
end

-- Create an account or change its settings. A new account waits for its first movement;
-- a changed credit limit or threshold may move the floor or ask for a recharge.
HANDLE[OPCODE.upsert_account] = function(op, fresh)
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  local account_key = op.account_key
  local created = redis.call('HSETNX', account_key, ACCOUNT_FIELD.balance, '0') == 1
  if created then
    redis.call('HSET', account_key, ACCOUNT_FIELD.account, op.account, ACCOUNT_FIELD.held, '0',
      ACCOUNT_FIELD.suspended, '0', ACCOUNT_FIELD.opening_balance, '0',
      ACCOUNT_FIELD.created_at, int(now_ms))
    redis.call('SADD', accounts_key, op.account)
  end
  redis.call('HSET', account_key, ACCOUNT_FIELD.currency, op.currency,
    ACCOUNT_FIELD.rate_plan, op.rate_plan, ACCOUNT_FIELD.credit_limit, op.credit_limit_micros,
    ACCOUNT_FIELD.auto_recharge_enabled, op.auto_recharge_enabled,
    ACCOUNT_FIELD.auto_recharge_threshold, op.auto_recharge_threshold_micros,
    ACCOUNT_FIELD.auto_recharge_amount, op.auto_recharge_amount_micros,
    ACCOUNT_FIELD.notify_email, op.notify_email, ACCOUNT_FIELD.time_zone, op.time_zone,
    ACCOUNT_FIELD.low_balance, op.low_balance_micros)
  if not created then
    local st = account_state(account_key)
    check_floor(account_key, op.account, op.cause, op.time, st, false)
    check_thresholds(account_key, op.account, st)
  end
  return 1, 0
end

-- An event that moves nothing (a late start of a settled call): only its id is kept.
HANDLE[OPCODE.remember] = function(op, fresh)
  if fresh then first_time(op.seen_key, op.fingerprint) end
  return 0, 1
end

-- A refused record, to the DLQ.
HANDLE[OPCODE.refuse] = function(op, fresh)
  if not fresh then return 0, 1 end
  emit_refused(op.key, op.value, op.reason, op.detail, op.source_topic, op.source_partition,
    op.source_offset, op.event_id, op.timestamp_ms, op.timestamp_type, op.headers,
    op.headers_dropped)
  return 1, 0
end
