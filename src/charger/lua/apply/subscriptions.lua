-- subscriptions.lua: recurring charges. The worker's scheduler (Python: local days and
-- months need the time zone database) plans each charge from the progress it read; a
-- charge applies only if the progress is still that one, so a period is charged once
-- whatever restarts, rebalances or retries happen between planning and applying.

-- Store the subscription as upserted (its progress stays) and have it looked at now.
HANDLE[OPCODE.upsert_subscription] = function(op, fresh)
  if not (fresh and first_time(op.seen_key, op.fingerprint)) then return 0, 1 end
  local key = op.subscription_key
  redis.call('HSET', key, SUBSCRIPTION_FIELD.account, op.account,
    SUBSCRIPTION_FIELD.subscription_id, op.subscription_id, SUBSCRIPTION_FIELD.item, op.item,
    SUBSCRIPTION_FIELD.description, op.description, SUBSCRIPTION_FIELD.price, op.price_micros,
    SUBSCRIPTION_FIELD.period, op.period, SUBSCRIPTION_FIELD.billing, op.billing,
    SUBSCRIPTION_FIELD.quantity, op.quantity, SUBSCRIPTION_FIELD.starts_at, op.starts_at_ms,
    SUBSCRIPTION_FIELD.ends_at, op.ends_at_ms)
  redis.call('HSETNX', key, SUBSCRIPTION_FIELD.charged_through, '')
  redis.call('HSETNX', key, SUBSCRIPTION_FIELD.charged_quantity, '0')
  redis.call('ZADD', subscriptions_key, 0, key)
  return 1, 0
end

-- One planned charge (or only the next look), from the progress it was planned from.
HANDLE[OPCODE.charge_subscription] = function(op)
  local key = op.subscription_key
  local progress = redis.call('HMGET', key, SUBSCRIPTION_FIELD.charged_through,
    SUBSCRIPTION_FIELD.charged_quantity)
  if (progress[1] or '') ~= op.charged_through_before
      or num(progress[2]) ~= op.charged_quantity_before then
    return 0, 1  -- charged meanwhile: the scheduler plans again from what is there now
  end
  if op.amount_micros ~= 0 then
    move(op.account_key, op.account, op.amount_micros, op.ledger_head, op.kind, op.cause,
      op.time)
  end
  redis.call('HSET', key, SUBSCRIPTION_FIELD.charged_through, op.charged_through,
    SUBSCRIPTION_FIELD.charged_quantity, op.charged_quantity)
  if op.next_look_ms < 0 then
    redis.call('ZREM', subscriptions_key, key)
  else
    redis.call('ZADD', subscriptions_key, op.next_look_ms, key)
  end
  return 1, 0
end
