-- wrk script for tests/soak: each thread sends a fixed share of the run's requests with valid
-- session cookies, and counts every answer that is not a 200 (wrk's own "Non-2xx or 3xx" line
-- does not count a 302, and a 302 to ClaveÚnica is exactly what a session the gate no longer
-- accepts would get) and every 200 that did not reach the app as the session's person.
--
--   wrk -s soak.lua URL -- REQUESTS THREADS MODE FILE
--
-- FILE has one session a line: `RUN COOKIE` (the RUN logged in with, the session cookie's
-- value). Every request goes to /soak/cuenta/<RUN>?format=json, the RUN of the cookie it
-- carries, so each answer says who it was for: a 200 counts as `wrong` unless the demo app's
-- JSON echo shows that path and the header ["x-claveunica-run","<same RUN>"].
--
-- MODE `fixed`: thread i (from 0) sends every request with session number i mod n, the
-- repeated-cookie case (after the first request, the gate's cache of opened sessions answers).
-- MODE `rotate`: thread i takes sessions i, i+THREADS, i+2*THREADS, ... and each request uses
-- the next one, round and round, so no two threads share a session and a cookie comes back
-- only after all n have been used: with n well above the cache's capacity, most requests make
-- the gate open (decrypt) their cookie and evict another.
--
-- Each thread stops after ceil(REQUESTS / THREADS) answers and writes SOAK_THREAD_DONE on
-- stderr. done() prints one line: SOAK requests=N seen=N non200=N s302=N s4xx=N s5xx=N
-- other=N wrong=N sessions=N connect=N read=N write=N timeout=N status=N duration_us=N
-- p50_us=N p99_us=N max_us=N

local threads = {}
local per_thread = 0
local reqs = {}
local next_req = 0

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

local function read_sessions(path)
  local list = {}
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    local run, cookie = line:match("^(%d+%-[%dkK]) (%S+)$")
    if run then
      table.insert(list, { run = run, cookie = cookie })
    elseif line ~= "" then
      error("soak.lua: not `RUN COOKIE`: " .. line)
    end
  end
  f:close()
  return list
end

local function format(s)
  return wrk.format("GET", "/soak/cuenta/" .. s.run .. "?format=json",
    { Cookie = "claveunica_session=" .. s.cookie })
end

function init(args)
  local total = tonumber(args[1])
  local nthreads = tonumber(args[2])
  local mode = args[3]
  local list = read_sessions(args[4])
  if #list == 0 then
    error("soak.lua: no sessions in " .. args[4])
  end
  per_thread = math.ceil(total / nthreads)
  if mode == "fixed" then
    table.insert(reqs, format(list[(index % #list) + 1]))
  elseif mode == "rotate" then
    for i = index + 1, #list, nthreads do
      table.insert(reqs, format(list[i]))
    end
    if #reqs == 0 then
      error("soak.lua: fewer sessions than threads")
    end
  else
    error("soak.lua: MODE must be fixed or rotate, not " .. tostring(mode))
  end
  sessions = #reqs
  seen = 0
  stopped = false
  non200 = 0
  s302 = 0
  s4xx = 0
  s5xx = 0
  other = 0
  wrong = 0
end

function request()
  next_req = next_req % #reqs + 1
  return reqs[next_req]
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
  else
    -- The answer names the path it was for; the app must have received that RUN.
    local run = body and body:match('"path":"/soak/cuenta/(%d+%-[%dkK])"')
    if not run or not body:find('["x-claveunica-run","' .. run .. '"]', 1, true) then
      wrong = wrong + 1
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
  local sum = { non200 = 0, s302 = 0, s4xx = 0, s5xx = 0, other = 0, wrong = 0, seen = 0, sessions = 0 }
  for _, t in ipairs(threads) do
    for k, _ in pairs(sum) do
      sum[k] = sum[k] + (t:get(k) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK requests=%d seen=%d non200=%d s302=%d s4xx=%d s5xx=%d other=%d wrong=%d sessions=%d"
      .. " connect=%d read=%d write=%d timeout=%d status=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, sum.seen, sum.non200, sum.s302, sum.s4xx, sum.s5xx, sum.other, sum.wrong, sum.sessions,
    e.connect, e.read, e.write, e.timeout, e.status, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
