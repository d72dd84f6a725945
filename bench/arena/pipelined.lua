-- HttpArena pipelined for wrk: 16 GET /pipeline written back to back; wrk
-- counts each response (latency is per batch).
local batch

function init(args)
  local reqs = {}
  for i = 1, 16 do reqs[i] = wrk.format("GET", "/pipeline") end
  batch = table.concat(reqs)
end

function request()
  return batch
end
