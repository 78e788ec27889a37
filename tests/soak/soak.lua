-- wrk script for tests/soak: each thread sends a fixed share of the chunk's requests with a
-- valid session cookie and counts every answer that is not a 200 (wrk's own "Non-2xx or 3xx"
-- line does not count a 302, and a 302 to ClaveÚnica is exactly what a session the gate no
-- longer accepts would get).
--
--   wrk -s soak.lua URL -- REQUESTS COOKIE [COOKIE...]
--
-- Thread i (from 0) uses COOKIE number i mod n, so several sessions are in use at once.
-- done() prints one line: SOAK requests=N non200=N s302=N s4xx=N s5xx=N other=N
-- connect=N read=N write=N timeout=N status=N

local threads = {}
local per_thread = 0
local cookies = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(args[1])
  local nthreads = tonumber(args[2])
  local n = #args - 2
  per_thread = math.ceil(total / nthreads)
  wrk.headers["Cookie"] = "claveunica_session=" .. args[3 + (index % n)]
  seen = 0
  stopped = false
  non200 = 0
  s302 = 0
  s4xx = 0
  s5xx = 0
  other = 0
end

function response(status, headers, body)
  seen = seen + 1
  if status ~= 200 then
    non200 = non200 + 1
    if status == 302 then
      s302 = s302 + 1
    elseif status >= 400 and status < 500 then
      s4xx = s4xx + 1
    elseif status >= 500 then
      s5xx = s5xx + 1
    else
      other = other + 1
    end
  end
  if seen >= per_thread and not stopped then
    -- wrk's main thread sleeps out -d: the driver sends it SIGINT once every thread said so.
    stopped = true
    io.stderr:write("SOAK_THREAD_DONE\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local sum = { non200 = 0, s302 = 0, s4xx = 0, s5xx = 0, other = 0, seen = 0 }
  for _, t in ipairs(threads) do
    for k, _ in pairs(sum) do
      sum[k] = sum[k] + (t:get(k) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK requests=%d seen=%d non200=%d s302=%d s4xx=%d s5xx=%d other=%d"
      .. " connect=%d read=%d write=%d timeout=%d status=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, sum.seen, sum.non200, sum.s302, sum.s4xx, sum.s5xx, sum.other,
    e.connect, e.read, e.write, e.timeout, e.status, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
