-- wrk script for redis_cluster_test.sh: GET /v1/results/<id> for the IDs of a truth file (one
-- "ID BODY" line each, the bodies recorded before a slot migration), and every 200 body compared
-- byte for byte with the one recorded for its ID. A Redis client that mixes up replies shows here
-- as another student's result under the right ID, which no status code reveals.
--
-- Usage: wrk -t1 -c8 -d4s -s same_bodies.lua URL -- TRUTH_FILE
-- done() prints: SAME requests=N non2xx=N errors=N mismatches=N

local ids, truth = {}, {}
mismatches = 0

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local id, body = line:match("^(%d+) (.*)$")
    if id then
      ids[#ids + 1] = id
      truth[id] = body
    end
  end
  assert(#ids > 0, "no IDs in " .. args[1])
  math.randomseed(7)
end

function request()
  return wrk.format("GET", "/v1/results/" .. ids[math.random(#ids)])
end

function response(status, headers, body)
  if status == 200 then
    local id = body:match('"student_id":(%d+)')
    if truth[id] ~= body then
      mismatches = mismatches + 1
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("mismatches")
  end
  local e = summary.errors
  io.write(string.format("SAME requests=%d non2xx=%d errors=%d mismatches=%d\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, total))
end
