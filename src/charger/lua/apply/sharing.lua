-- sharing.lua: what is left of an account's money, shared among its calls
-- (charging/sharing.py is the reference).
--
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
  if x.call.answered_at_ms ~= y.call.answered_at_ms then
    return x.call.answered_at_ms < y.call.answered_at_ms
  end
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
local function share(account_key, account_calls_key, account, at)
  local st = account_state(account_key)
  local pool = num(st.balance) + num(st.credit_limit)
  local window_end = at + hold_interval_s * 1000
  local heap, calls = {}, {}
  for _, call_key in ipairs(redis.call('SMEMBERS', account_calls_key)) do
    local c = load_session(call_key)
    if c.state == CALL_STATUS.cut then
      pool = pool - c.held_micros
    elseif c.state == CALL_STATUS.active and c.zero_rate ~= '1' then
      c.key = call_key
      calls[#calls + 1] = c
      c.exhausted = false
      local free_talk = c.price_per_minute_micros == 0 -- a connect fee only: nothing to buy
      if free_talk then
        local talk_s = cdiv(math.max(window_end - c.answered_at_ms, 1000), 1000)
        c.new_covered_s = billed_for(c, talk_s)
      end
      if c.answered_at_ms > at then
        if not free_talk then c.new_covered_s = 0 end
        heap_push(heap, {time = c.answered_at_ms, kind = ANSWER, call = c})
      elseif free_talk then
        pool = pool - c.connect_fee_micros
      else
        -- the increment in progress at `at` is bought, never beyond what was covered
        local bought = billed_for(c, cdiv(at - c.answered_at_ms, 1000))
        if bought > c.covered_s then bought = c.covered_s end
        c.new_covered_s = bought
        pool = pool - cost(c, bought)
        heap_push(heap, {time = c.answered_at_ms + bought * 1000, kind = PURCHASE, call = c})
      end
    end
  end
  while #heap > 0 do
    local step = heap_pop(heap)
    local c = step.call
    if step.kind == ANSWER then
      pool = pool - c.connect_fee_micros -- answered: the fee is spent whatever is left
      if c.price_per_minute_micros > 0 then
        heap_push(heap, {time = c.answered_at_ms, kind = PURCHASE, call = c})
      end
    elseif step.time < window_end then
      local next_covered = billed_for(c, c.new_covered_s + 1)
      local price = cost(c, next_covered) - cost(c, c.new_covered_s)
      if price <= pool then
        pool = pool - price
        c.new_covered_s = next_covered
        heap_push(heap, {time = c.answered_at_ms + next_covered * 1000, kind = PURCHASE, call = c})
      else
        c.exhausted = true
      end
    end
  end
  local held_change, shared = 0, {}
  for _, c in ipairs(calls) do
    local hold = cost(c, c.new_covered_s)
    held_change = held_change + hold - c.held_micros
    redis.call('HSET', c.key, CALL_FIELD.covered, int(c.new_covered_s), CALL_FIELD.held, int(hold))
    shared_due[c.key] = schedule(c.key, c.answered_at_ms, c.new_covered_s, c.exhausted)
    shared[c.key] = {covered_s = c.new_covered_s, exhausted = c.exhausted}
  end
  if held_change ~= 0 then
    change_held(account_key, st, held_change)
    check_thresholds(account_key, account, st)
  end
  return shared
end
