-- wrk script for the Stock Tracker benchmark (driven by bench/run.py).
--
-- Reads the request file named by BENCH_REQUESTS: one request per line,
--   METHOD <tab> PATH <tab> BEARER TOKEN (or empty) <tab> JSON BODY (or empty)
-- and formats every request once, in init(), so the measured loop only hands
-- wrk a ready string. Thread i of BENCH_THREADS starts at offset i/n of the
-- list and cycles, so threads never walk the same ids side by side (which
-- matters for the uncached scenario: an id read twice is a cache hit).
--
-- No response() hook on purpose: defining one makes wrk parse every header
-- and body, which slows the load generator down.

local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
end

local requests = {}
local position = 0

local function format_request(method, path, token, body)
   local headers = { ["Accept"] = "application/json" }
   if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
   end
   if body == "" then
      body = nil
   else
      headers["Content-Type"] = "application/json"
   end
   return wrk.format(method, path, headers, body)
end

function init(args)
   local path = os.getenv("BENCH_REQUESTS")
   local file = assert(io.open(path, "r"), "cannot open BENCH_REQUESTS file " .. tostring(path))
   for line in file:lines() do
      local method, target, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      assert(method, "malformed request line: " .. line)
      requests[#requests + 1] = format_request(method, target, token, body)
   end
   file:close()
   assert(#requests > 0, "no requests in " .. path)
   local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
   position = math.floor(#requests * thread_index / threads)
end

function request()
   position = position % #requests + 1
   return requests[position]
end

function done(summary, latency, _)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   local function ms(microseconds)
      return microseconds / 1000
   end
   io.write(string.format(
      "BENCH_JSON {\"requests\": %d, \"duration_s\": %.3f, \"rps\": %.1f, "
         .. "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
         .. "\"errors\": %d, \"socket_errors\": %d, \"status_errors\": %d}\n",
      summary.requests, seconds, summary.requests / seconds,
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)), ms(latency.max),
      e.connect + e.read + e.write + e.timeout + e.status,
      e.connect + e.read + e.write + e.timeout, e.status))
end
