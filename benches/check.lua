-- wrk script (benches/README.md): sends the requests of a list in turn and checks every answer.
--
-- Arguments (after wrk's `--`): the list file, the expected status, and whether each answer must
-- echo the request's RUN. Each line of the list is `RUN<TAB>COOKIE` (`-` for no Cookie header);
-- request i goes to /private?s=i with that cookie and wrk's -H headers. The upstream echoes what
-- reached it: `x-echo-path` (so an answer is matched to its request whatever connection carried
-- it) and `x-echo-run` (the x-claveunica-run the application got). An answer fails if its status
-- is not the expected one or, when RUNs are checked, if the echoed RUN is not line i's RUN
-- (missing, empty or the client's forged one all fail). done() prints the counts; bench.py fails
-- the variant on any failure. Every variant runs this same script, so its cost in wrk is equal.

local requests, runs = {}, {}
local want_status, check_run = 200, true
ok, bad_status, bad_run = 0, 0, 0
local next_i = 0

function init(args)
  want_status = tonumber(args[2])
  check_run = args[3] == "run"
  for line in io.lines(args[1]) do
    local run, cookie = line:match("^([^\t]*)\t(.*)$")
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    if cookie ~= "-" then headers["Cookie"] = cookie end
    runs[#runs + 1] = run
    requests[#requests + 1] = wrk.format("GET", "/private?s=" .. #runs, headers)
  end
end

function request()
  next_i = next_i % #requests + 1
  return requests[next_i]
end

function response(status, headers, body)
  if status ~= want_status then
    bad_status = bad_status + 1
    return
  end
  if check_run then
    local path = headers["x-echo-path"]
    local i = path and tonumber(path:match("s=(%d+)$"))
    if not i or headers["x-echo-run"] ~= runs[i] then
      bad_run = bad_run + 1
      return
    end
  end
  ok = ok + 1
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local good, status, run = 0, 0, 0
  for _, t in ipairs(threads) do
    good = good + t:get("ok")
    status = status + t:get("bad_status")
    run = run + t:get("bad_run")
  end
  io.write(string.format("checked ok=%d bad_status=%d bad_run=%d\n", good, status, run))
end
