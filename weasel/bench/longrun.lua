-- wrk script for longrun.sh: POST /v1/commit overwriting 10,000 keys with
-- 1 KiB values, a unique request_id per request.
-- Usage: wrk -s longrun.lua URL -- NONCE
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  nonce = args[1] or tostring(os.time())
  value = string.rep("v", 1024)
  counter = 0
end

function request()
  counter = counter + 1
  local rid = nonce .. "-" .. tid .. "-" .. counter
  local key = "k-" .. ((tid * 7919 + counter) % 10000)
  local body = '{"request_id":"' .. rid .. '","operations":[{"op":"set","key":"'
    .. key .. '","value":"' .. value .. '"}]}'
  return wrk.format("POST", "/v1/commit", {["Content-Type"] = "application/json"}, body)
end
