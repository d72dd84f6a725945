-- HttpArena upload for wrk: POST /upload with bodies of 500 KB, 2 MB, 5 MB
-- and 20 MB in turn. With a number argument, every body has that many bytes
-- (the peak-RSS run: 20000000).
local reqs, n = {}, 0

function init(args)
  local sizes = { 500000, 2000000, 5000000, 20000000 }
  if tonumber(args[1] or "") then sizes = { tonumber(args[1]) } end
  local chunk = string.rep("0123456789abcdef", 4096)
  for i, size in ipairs(sizes) do
    local body = string.rep(chunk, math.floor(size / #chunk)) .. string.rep("x", size % #chunk)
    reqs[i] = wrk.format("POST", "/upload", { ["Content-Type"] = "application/octet-stream" }, body)
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end
