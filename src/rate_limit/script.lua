-- One rate-limit decision over the windows of one hash slot, atomically, in
-- one round trip: the caller's revocation state, then every window, then —
-- only if all of them have room — the hits recorded in each. The algorithm
-- (sub-window counters) is described in `window.rs`, which the in-process
-- fallback runs; keep the two in step.
--
-- It runs on every request, so it does as little as it can: one MGET reads
-- the revocation state and every scope, each scope's windows packed in one
-- string (per window: the newest sub-window's index, then n+1 counts,
-- newest first); one SET per scope writes it back. No hash, no per-field
-- command: Redis's work is two commands plus the arithmetic.
--
-- KEYS: [revocation marker, revoked-jti key, user invalid-before key]
--       when ARGV[3] == "1", then one key per scope.
-- ARGV: [1] hits to record: 0 only looks; k > 1 (a lease) records as many
--           as every window has room for, up to k
--       [2] sub-windows per window (n)
--       [3] "1" when the caller presents an access token
--       [4] the token's issue time, in Unix milliseconds
--       then per scope: its number of windows, then per window: limit,
--       sub-window width in ms
-- Returns: revocation status (0 valid or no token, 1 revoked, 2 unknown:
--          Redis lost the tenant's revocation state), hits granted (0:
--          refused), the time in ms, then per window: count before this
--          request, ms until it admits again when full, ms until it is
--          empty. A revoked token stops the script: nothing is counted.

local want = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local bearer = ARGV[3] == '1'
local first = 1
if bearer then
  first = 4
end

local values = redis.call('MGET', unpack(KEYS))
local status = 0
if bearer then
  if not values[1] then
    status = 2
  elseif values[2] then
    status = 1
  elseif values[3] and tonumber(values[3]) > tonumber(ARGV[4]) then
    status = 1
  end
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if status == 1 then
  return {1, 0, now}
end

-- A window packed: its newest sub-window's index, then n+1 counts.
local window_format = '<d' .. string.rep('I4', n + 1)
local window_size = 8 + 4 * (n + 1)

local reply = {status, 0, now}
local scopes = {}
local room = want
if room < 1 then
  room = 1
end
local arg = 5
for k = first, #KEYS do
  local count_windows = tonumber(ARGV[arg])
  arg = arg + 1
  local raw = values[k]
  if raw and #raw ~= count_windows * window_size then
    raw = nil
  end
  local windows = {}
  for w = 1, count_windows do
    local limit = tonumber(ARGV[arg])
    local width = tonumber(ARGV[arg + 1])
    arg = arg + 2
    local current = math.floor(now / width)
    -- counts[j + 1] holds sub-window (current - j), for j = 0..n.
    local counts = {}
    if raw then
      local unpacked = {struct.unpack(window_format, raw, (w - 1) * window_size + 1)}
      local shift = current - unpacked[1]
      for j = 0, n do
        local c = 0
        if j >= shift and j - shift <= n then
          c = unpacked[j - shift + 2]
        end
        counts[j + 1] = c
      end
    else
      for j = 0, n do
        counts[j + 1] = 0
      end
    end
    local count = 0
    for j = 1, n + 1 do
      count = count + counts[j]
    end
    local retry = 0
    if count >= limit then
      -- Enough of the oldest hits must age out to leave room for one.
      local need, freed = count - limit + 1, 0
      for j = n, 0, -1 do
        freed = freed + counts[j + 1]
        if freed >= need then
          retry = (current - j + n + 1) * width - now
          break
        end
      end
    end
    local reset = 0
    for j = 0, n do
      if counts[j + 1] > 0 then
        reset = (current - j + n + 1) * width - now
        break
      end
    end
    if limit - count < room then
      room = limit - count
    end
    reply[#reply + 1] = count
    reply[#reply + 1] = retry
    reply[#reply + 1] = reset
    windows[w] = {current, width, counts}
  end
  scopes[#scopes + 1] = {KEYS[k], windows}
end

if room < 1 then
  return reply
end
reply[2] = room
if want == 0 then
  return reply
end
for _, scope in ipairs(scopes) do
  local parts, ttl = {}, 0
  for w, window in ipairs(scope[2]) do
    local current, width, counts = window[1], window[2], window[3]
    counts[1] = counts[1] + room
    parts[w] = struct.pack(window_format, current, unpack(counts))
    -- The key outlives its newest hit's last window.
    if (n + 2) * width > ttl then
      ttl = (n + 2) * width
    end
  end
  redis.call('SET', scope[1], table.concat(parts), 'PX', ttl)
end
return reply
