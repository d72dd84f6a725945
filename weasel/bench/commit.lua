-- wrk script: POST /v1/commit with a unique request_id per request and a
-- 1 KiB value. Usage: wrk -s commit.lua URL -- NONCE (NONCE keeps ids
-- unique across runs against the same data directory).
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  nonce = args[1] or tostring(os.time())
  value = string.rep("v", 1024)
  counter = 0
  failed = 0
end

function request()
  counter = counter + 1
  local rid = nonce .. "-" .. tid .. "-" .. counter
  local key = "bench-" .. tid .. "-" .. (counter % 4096)
  local body = '{"request_id":"' .. rid .. '","operations":[{"op":"set","key":"'
    .. key .. '","value":"' .. value .. '"}]}'
  return wrk.format("POST", "/v1/commit", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local f = 0
  for _, t in ipairs(threads) do
    f = f + (t:get("failed") or 0)
  end
  io.write(string.format("commit_failed %d\n", f))
  io.write(string.format("latency_p50_us %d\nlatency_p99_us %d\n",
    latency:percentile(50), latency:percentile(99)))
end
