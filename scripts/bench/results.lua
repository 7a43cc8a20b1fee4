-- scripts/bench/results.lua - wrk script of `cargo xtask bench api|stack` (xtask/src/bench/wrk.rs)
-- and of scripts/tests/edge_test.sh and redis_cluster_test.sh. Kept in Lua: wrk runs nothing else.
--
-- Each request is GET /v1/results/<id> with <id> uniformly random over the data set's
-- registration numbers: `wrk ... URL -- FIRST LAST` (xtask passes results-core's default data
-- set), else the range below (1000000..1674822, which the script tests rewrite with sed); the
-- same seeded sequence for every target (math.randomseed(42); wrk runs one Lua state per
-- thread, and the benchmarks use one thread).
-- The request head is built once in init(); per request there is one math.random call and
-- one string concatenation, so the load generator's cost is the same for every target.
--
-- At the end, done() prints one machine-readable line for xtask:
--   BENCH requests=N duration_us=N rps=F p50_us=N p90_us=N p99_us=N max_us=N
--         non2xx=N connect=N read=N write=N timeout=N bytes=N
-- (non2xx is wrk's errors.status: responses with a status >= 400.) Latencies are wrk's own,
-- measured from send to receive: wrk does not correct for coordinated omission.

local first_id, last_id = 1000000, 1674822
math.randomseed(42)

local head, tail

function init(args)
  if args[1] and args[2] then
    first_id, last_id = tonumber(args[1]), tonumber(args[2])
  end
  -- wrk.init has set wrk.headers["Host"] ("127.0.0.1:port") before calling us.
  head = "GET /v1/results/"
  tail = " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] .. "\r\n\r\n"
end

function request()
  return head .. math.random(first_id, last_id) .. tail
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d bytes=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout, summary.bytes))
end
