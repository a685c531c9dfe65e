-- wrk script for bench/run.py: POST one JSON body on every request and print a
-- machine-readable summary line.
--   wrk -t1 -c8 -d5s -s bench/post.lua http://127.0.0.1:8000/predict -- body.json
-- Reference: https://github.com/wg/wrk/blob/master/SCRIPTING

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- Runs once per wrk thread, before wrk formats the request it will repeat.
-- BODY_FILE.headers, if present, holds extra "Name: value" lines (binary
-- tensor bodies need Inference-Header-Content-Length).
function init(args)
  local file = assert(io.open(args[1], "rb"), "usage: -- BODY_FILE")
  wrk.body = file:read("*a")
  file:close()
  local headers = io.open(args[1] .. ".headers", "rb")
  if headers then
    for line in headers:lines() do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      if name then wrk.headers[name] = value end
    end
    headers:close()
  end
end

-- Latencies are in microseconds. errors.status counts responses that are not
-- 2xx or 3xx, so a run that only measured fast 4xx errors is caught.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d "
      .. "connect_errors=%d read_errors=%d write_errors=%d "
      .. "status_errors=%d timeouts=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
