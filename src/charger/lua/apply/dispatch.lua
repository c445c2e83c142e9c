-- dispatch.lua: apply the call's ops in order, write its outputs, advance the watermarks.
--
-- Exactly-once: an op whose source offset is at or below the slot's watermark for its
-- source partition was applied before (redelivery) and is skipped; an op whose event id is
-- already in the seen set is a producer resend and is skipped. Every output is appended
-- to the slot's outbox in this same call, so a crash after it loses nothing: the relay
-- publishes the outbox.

-- Redis forgot records this call follows on from (a failover to a replica that was
-- behind, a restore from an older state): apply nothing, and say how far each such
-- source really got, so the worker reads it again from there. A slot with no watermark
-- of a source at all was never assigned it (the worker starts one at assignment): a new
-- deployment starts where its consumer group stands.
local forgotten = {}
for index = 1, source_count do
  if marks[index] > NO_WATERMARK and marks[index] < expected[index] then
    forgotten[#forgotten + 1] = sources[index]
    forgotten[#forgotten + 1] = marks[index]
  end
end
if #forgotten > 0 then
  return {0, 0, forgotten}
end

local applied, skipped = 0, 0
local p, k = 1, 1
while more_ops(p) do
  local op, next_p, next_k = read_op(p, k)
  cause_trace = op.trace or ''  -- what the op emits carries its cause's trace context
  local fresh = op.source == nil or op.offset > marks[op.source]
  local done, passed = HANDLE[op.opcode](op, fresh)
  applied, skipped = applied + done, skipped + passed
  p, k = next_p, next_k
end

flush_outputs()

for index = 1, source_count do
  if highest[index] > marks[index] then
    redis.call('HSET', watermark_key, sources[index], int(highest[index]))
  end
end

return {applied, skipped}
