-- One rate-limit decision, atomically, in one round trip: the caller's
-- revocation state, then every window of every scope, then — only if all of
-- them have room — one hit recorded in each. The algorithm (sub-window
-- counters in a hash per window) is described in `window.rs`, which the
-- in-process fallback runs; keep the two in step.
--
-- It also notes the caller's tenant as active this minute (a HyperLogLog
-- per minute: `stock_tracker_active_tenants` counts the union of the last
-- minutes without a tenant label, across replicas, in ~12 KiB per minute);
-- the limiter passes a tenant only on its first request of the minute in
-- this process.
--
-- It runs on every request, so it issues as few commands as it can: one
-- MGET for the revocation state, and a window's expiry is set only when a
-- new sub-window starts (the key then outlives its newest sub-window).
--
-- KEYS: [revocation marker, revoked-jti key, user invalid-before key]
--       when ARGV[3] == "1", then this minute's active-tenant key when
--       ARGV[5] is not empty, then one hash per window.
-- ARGV: [1] "1" to record a hit, "0" to only look
--       [2] sub-windows per window (n)
--       [3] "1" when the caller presents an access token
--       [4] the token's issue time, in Unix milliseconds
--       [5] the caller's tenant id, its 16 bytes ("" for anonymous calls)
--       [6] how long an active-tenant key lives, in ms
--       then per window: limit, sub-window width in ms, group
--       (0: always; 1: only if the token is valid; 2: only if it is revoked)
-- Returns: revocation status (0 valid or no token, 1 revoked, 2 unknown:
--          Redis lost its revocation state), 1 if admitted, the time in ms,
--          then per window: count before this request (-1 if it did not
--          apply), ms until it admits again when full, ms until it is empty.

local record = ARGV[1] == '1'
local n = tonumber(ARGV[2])
local status = 0
local first = 1
if ARGV[3] == '1' then
  first = 4
  local state = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])
  if not state[1] then
    status = 2
  elseif state[2] then
    status = 1
  elseif state[3] and tonumber(state[3]) > tonumber(ARGV[4]) then
    status = 1
  end
end
-- A revoked token counts as an anonymous call; any other as its tenant's.
local skipped_group = 2
if status == 1 then
  skipped_group = 1
end

if ARGV[5] ~= '' then
  if redis.call('PFADD', KEYS[first], ARGV[5]) == 1 then
    redis.call('PEXPIRE', KEYS[first], tonumber(ARGV[6]))
  end
  first = first + 1
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local admitted = true
local windows = {}
local reply = {status, 0, now}
for k = first, #KEYS do
  local arg = 7 + (k - first) * 3
  local limit = tonumber(ARGV[arg])
  local width = tonumber(ARGV[arg + 1])
  local group = tonumber(ARGV[arg + 2])
  if group == skipped_group then
    reply[#reply + 1] = -1
    reply[#reply + 1] = 0
    reply[#reply + 1] = 0
  else
    local current = math.floor(now / width)
    local oldest = current - n
    local flat = redis.call('HGETALL', KEYS[k])
    -- One pass sums the live sub-windows; the sorted list of them, needed
    -- only to tell a refused caller when room frees up, is built only then.
    local stale, count, newest = {}, 0, nil
    for i = 1, #flat, 2 do
      local index = tonumber(flat[i])
      if index >= oldest then
        count = count + tonumber(flat[i + 1])
        if newest == nil or index > newest then
          newest = index
        end
      else
        stale[#stale + 1] = flat[i]
      end
    end
    local retry = 0
    if count >= limit then
      admitted = false
      local live = {}
      for i = 1, #flat, 2 do
        local index = tonumber(flat[i])
        if index >= oldest then
          live[#live + 1] = {index, tonumber(flat[i + 1])}
        end
      end
      table.sort(live, function(a, b) return a[1] < b[1] end)
      local need, freed = count - limit + 1, 0
      for _, bucket in ipairs(live) do
        freed = freed + bucket[2]
        if freed >= need then
          retry = (bucket[1] + n + 1) * width - now
          break
        end
      end
    end
    local reset = 0
    if newest ~= nil then
      reset = (newest + n + 1) * width - now
    end
    reply[#reply + 1] = count
    reply[#reply + 1] = retry
    reply[#reply + 1] = reset
    windows[#windows + 1] = {k, width, current, stale}
  end
end

if admitted and record then
  for _, w in ipairs(windows) do
    local key, width, current, stale = KEYS[w[1]], w[2], w[3], w[4]
    if redis.call('HINCRBY', key, current, 1) == 1 then
      redis.call('PEXPIRE', key, (n + 2) * width)
    end
    if #stale > 0 then
      redis.call('HDEL', key, unpack(stale))
    end
  end
end
if admitted then
  reply[2] = 1
end
return reply
