-- HttpArena json for wrk: GET /json/{count}?m={m}, count 1..50 and m 1..9
-- rotating. With the argument `comp` (json-comp): Accept-Encoding: gzip, br.
local reqs, n = {}, 0

function init(args)
  local headers = {}
  if args[1] == "comp" then headers["Accept-Encoding"] = "gzip, br" end
  math.randomseed(7)
  for i = 1, 500 do
    local count, m = (i - 1) % 50 + 1, math.random(1, 9)
    reqs[i] = wrk.format("GET", "/json/" .. count .. "?m=" .. m, headers)
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end
