-- HttpArena baseline for wrk: rotating GET /baseline11?a=&b=, POST with a
-- Content-Length body and POST with a chunked body (a third each), random
-- inputs drawn once per thread (fixed seed: the same mix for every server).
--   wrk -t1 -c256 -d5s --latency -s baseline.lua http://127.0.0.1:8080
-- With the argument `close` (limited-conn), every 10th request of a thread
-- carries `Connection: close`: each connection ends after about 10 requests
-- and wrk reconnects.
local reqs, n, close_every = {}, 0, 0

local function chunked(path, body)
  return "POST " .. path .. " HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. string.format("%x", #body) .. "\r\n" .. body .. "\r\n0\r\n\r\n"
end

function init(args)
  if args[1] == "close" then close_every = 10 end
  math.randomseed(42)
  for i = 1, 300 do
    local a, b, c = math.random(1, 100000), math.random(1, 100000), math.random(1, 100000)
    local path = "/baseline11?a=" .. a .. "&b=" .. b
    local kind = i % 3
    local r
    if kind == 0 then
      r = wrk.format("GET", path)
    elseif kind == 1 then
      r = wrk.format("POST", path, { ["Content-Type"] = "text/plain" }, tostring(c))
    else
      r = chunked(path, tostring(c))
    end
    reqs[i] = r
  end
  if close_every > 0 then
    -- The same requests, closing: every close_every-th one.
    for i = 1, #reqs do
      if i % close_every == 0 then
        -- After the request line (wrk.format's Host is the target's
        -- address, not "localhost": match no header).
        reqs[i] = reqs[i]:gsub("\r\n", "\r\nConnection: close\r\n", 1)
      end
    end
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end
