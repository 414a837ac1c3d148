-- One rate-limit decision over the windows of one hash slot, atomically, in
-- one round trip: the caller's revocation state, then every window, then —
-- only if all of them have room — the hits recorded in each. The algorithm
-- (sub-window counters) is described in `window.rs`, which the in-process
-- fallback runs; keep the two in step.
--
-- It runs on every request, so its cost does not grow with the number of
-- sub-windows: one MGET reads the revocation state and every scope, each
-- scope's windows packed in one string; one SET per scope writes it back.
-- A window is packed as its newest sub-window's index, the running total of
-- its counted sub-windows, then a ring of n+1 counts (sub-window i at
-- position i mod (n+1)). A request in the same sub-window as the previous
-- one reads the total and rewrites two numbers; only when sub-windows have
-- rotated out are their counts subtracted — at most once each — and only a
-- full window walks the ring to say when it admits again.
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

local slots = n + 1
local window_size = 12 + 4 * slots
local ring_format = '<' .. string.rep('I4', slots)

-- The count of sub-window `index` in a stored window (0 when new or aged out).
local function count_of(raw, base, newest, current, index)
  if base < 0 or index > newest or index < current - n then
    return 0
  end
  return (struct.unpack('<I4', raw, base + 13 + 4 * (index % slots)))
end

local reply = {status, 0, now}
-- Eight values per window, flat (no table per window): its key's position
-- in KEYS, the scope's string, the window's offset in it (-1: a fresh
-- window), its stored newest sub-window, its count, the current sub-window,
-- how many sub-windows it moved, and the sub-window width.
local windows = {}
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
  for w = 1, count_windows do
    local limit = tonumber(ARGV[arg])
    local width = tonumber(ARGV[arg + 1])
    arg = arg + 2
    local current = math.floor(now / width)
    local base, newest, total, shift = -1, current, 0, 0
    if raw then
      base = (w - 1) * window_size
      newest, total = struct.unpack('<dI4', raw, base + 1)
      shift = current - newest
      if shift > n then
        -- Every stored sub-window has aged out.
        base, newest, total, shift = -1, current, 0, 0
      elseif shift < 0 then
        -- Another node's clock (after a failover) is behind: keep counting
        -- in the newest stored sub-window.
        current, shift = newest, 0
      else
        -- Sub-windows newest-n .. current-n-1 leave the count now.
        for i = newest - n, current - n - 1 do
          total = total - struct.unpack('<I4', raw, base + 13 + 4 * (i % slots))
        end
      end
    end
    local retry = 0
    if total >= limit then
      -- Enough of the oldest hits must age out to leave room for one.
      local need, freed = total - limit + 1, 0
      for j = n, 0, -1 do
        freed = freed + count_of(raw, base, newest, current, current - j)
        if freed >= need then
          retry = (current - j + slots) * width - now
          break
        end
      end
    end
    local reset = 0
    if total > 0 then
      for j = 0, n do
        if count_of(raw, base, newest, current, current - j) > 0 then
          reset = (current - j + slots) * width - now
          break
        end
      end
    end
    if limit - total < room then
      room = limit - total
    end
    reply[#reply + 1] = total
    reply[#reply + 1] = retry
    reply[#reply + 1] = reset
    local at = #windows
    windows[at + 1], windows[at + 2], windows[at + 3], windows[at + 4] = k, raw, base, newest
    windows[at + 5], windows[at + 6], windows[at + 7], windows[at + 8] = total, current, shift, width
  end
end

if room < 1 then
  return reply
end
reply[2] = room
if want == 0 then
  return reply
end
local parts, ttl, key = {}, 0, nil
local function flush()
  redis.call('SET', KEYS[key], table.concat(parts), 'PX', ttl)
  parts, ttl = {}, 0
end
for at = 0, #windows - 1, 8 do
  local k, raw, base, newest, total, current, shift, width = unpack(windows, at + 1, at + 8)
  if key and k ~= key then
    flush()
  end
  key = k
  local position = current % slots
  if base >= 0 and shift == 0 then
    -- The common case: the same sub-window as the last request.
    local offset = base + 13 + 4 * position
    parts[#parts + 1] = struct.pack('<dI4', current, total + room)
    parts[#parts + 1] = raw:sub(base + 13, offset - 1)
    parts[#parts + 1] = struct.pack('<I4', struct.unpack('<I4', raw, offset) + room)
    parts[#parts + 1] = raw:sub(offset + 4, base + window_size)
  else
    -- Sub-windows rotated: rebuild the ring, zeroing the ones now reused.
    local ring = {}
    if base >= 0 then
      ring = {struct.unpack(ring_format, raw, base + 13)}
      for i = newest + 1, current do
        ring[i % slots + 1] = 0
      end
    else
      for p = 1, slots do
        ring[p] = 0
      end
    end
    ring[position + 1] = ring[position + 1] + room
    parts[#parts + 1] = struct.pack('<dI4', current, total + room)
    parts[#parts + 1] = struct.pack(ring_format, unpack(ring, 1, slots))
  end
  -- The key outlives its newest hit's last window.
  if (n + 2) * width > ttl then
    ttl = (n + 2) * width
  end
end
flush()
return reply
