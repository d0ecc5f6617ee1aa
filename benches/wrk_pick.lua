-- wrk script for BENCHMARKS.md "Through the service under wrk -c64": run from the directory
-- holding tokens.txt (one application token a line, as `tessera app create --json` prints).
-- Each request presents one of the issued tokens at random (Authorization: Bearer), on the
-- path given as the script's first argument (/feed guarded, /open unguarded: same work for wrk).
local tokens = {}
for line in io.lines("tokens.txt") do tokens[#tokens + 1] = line end
local path = "/feed"
function init(args)
  if args[1] then path = args[1] end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  local t = tokens[math.random(#tokens)]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. t })
end
