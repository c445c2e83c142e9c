-- tick.lua: the slot's due sessions are looked at: holds extended, calls cut at the
-- instant their money ends, sessions past the longest call expired; late recharge
-- requests time out.

HANDLE[OPCODE.tick] = function(op)
  time_out_requests(op.max_sessions)
  local due = redis.call('ZRANGEBYSCORE', sessions_key, '-inf', now_ms, 'LIMIT', 0, op.max_sessions)
  local cuts = 0
  for _, call_key in ipairs(due) do
    local s = load_session(call_key)
    if s.state ~= CALL_STATUS.active and s.state ~= CALL_STATUS.cut then
      redis.call('ZREM', sessions_key, call_key)
    elseif now_ms >= s.answered_at_ms + max_call_ms then
      expire(call_key, s)
    elseif s.state == CALL_STATUS.cut or s.zero_rate == '1' then
      redis.call('ZADD', sessions_key, s.answered_at_ms + max_call_ms, call_key)
    elseif (shared_due[call_key] or now_ms) <= now_ms then
      local at = math.min(now_ms, s.answered_at_ms + s.covered_s * 1000)
      local covered_s, exhausted = grow(call_key, s, at)
      local ends = s.answered_at_ms + covered_s * 1000
      if exhausted and ends <= now_ms then
        cut_call(call_key, s, ends)
        cuts = cuts + 1
      end
    end
  end
  -- the tick reports sessions looked at and calls cut in the applied / skipped counts
  return #due, cuts
end
