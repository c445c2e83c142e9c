-- arithmetic.lua: integer maths on doubles, and the cost of billed talk time.
--
-- Money is integer micro-units. Lua numbers are doubles, exact below 2^53 (9e15 micros);
-- the decoder refuses amounts and balances that could leave that range, and balances are
-- moved with HINCRBY so Redis itself keeps them as 64-bit integers.

local function int(x)
  return string.format('%d', x)
end

local function num(x)
  return tonumber(x or '0')
end

local function idiv(x, y) -- floor(x / y), x >= 0, y >= 1
  local q = math.floor(x / y)
  local r = x - q * y
  if r < 0 then q = q - 1 elseif r >= y then q = q + 1 end
  return q
end

local function cdiv(x, y)
  return idiv(x + y - 1, y)
end

-- Seconds of talk time billed for `seconds`, in whole increments (charging/session.py is
-- the reference of this maths).
local function billed(seconds, first_increment_s, next_increment_s)
  if seconds <= 0 then return 0 end
  if seconds <= first_increment_s then return first_increment_s end
  return first_increment_s + cdiv(seconds - first_increment_s, next_increment_s) * next_increment_s
end

-- What `covered_s` seconds of a call cost, its connect fee included.
local function cost(call, covered_s)
  return cdiv(covered_s * call.price_per_minute_micros, 60) + call.connect_fee_micros
end
