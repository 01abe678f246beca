"""Lua scripts of the Redis backend; they mirror `memory._Log` step for step.

KEYS[1] is the request log (sorted set: reservation id scored by admission time in µs), KEYS[2]
the token hash (reservation id -> tokens, plus the running total under SUM, so admission need
not add up the whole window). Numbers going into redis.call are formatted with %d: Lua would
otherwise print µs timestamps as "1.7e+15" and lose precision.
"""

_COMMON = """
local req_key, tok_key = KEYS[1], KEYS[2]
local SUM = '#sum'
local function int(n) return string.format('%d', n) end
local function server_now(now)
  if now >= 0 then return now end  -- injected by tests
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- A settlement: the entry's pre-counted tokens become the actual ones, unless it has left.
local function correct(id, actual, now, window)
  local at = redis.call('ZSCORE', req_key, id)
  if not at or tonumber(at) <= now - window then return 0 end  -- already out of the window
  local old = tonumber(redis.call('HGET', tok_key, id)) or 0
  redis.call('HSET', tok_key, id, int(actual))
  redis.call('HINCRBY', tok_key, SUM, int(actual - old))
  return 1
end
"""

# ARGV: rpm, tpm, tokens, window_us, reservation id, now_us (-1: server TIME, so that
# instances with skewed clocks agree), record (1; 0 for a peek that only prunes and reads), then
# any settlements of the key still to apply, as pairs of reservation id and actual tokens (the
# backend sends them with the key's next admission, saving a round trip each).
# Returns {exceeded, used_requests, used_tokens, reset_requests_us, reset_tokens_us, retry_us}
# with retry_us = -1 for "none".
ADMIT = _COMMON + """
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window, id = tonumber(ARGV[4]), ARGV[5]
local now = server_now(tonumber(ARGV[6]))
local record = ARGV[7] ~= '0'
local shift = window - now  -- an entry admitted at t leaves the window t + shift from now
local cutoff = int(now - window)

for i = 8, #ARGV, 2 do correct(ARGV[i], tonumber(ARGV[i + 1]), now, window) end

-- Reads the ids (and scores) of entries [start, start + size - 1] in one direction, with their tokens.
local function page(cmd, start, size)
  local e = redis.call(cmd, req_key, start, start + size - 1, 'WITHSCORES')
  if #e == 0 then return e, {} end
  local ids = {}
  for i = 1, #e, 2 do ids[#ids + 1] = e[i] end
  return e, redis.call('HMGET', tok_key, unpack(ids))
end

-- Entries admitted at or before now - window have left.
local expired = redis.call('ZRANGEBYSCORE', req_key, '-inf', cutoff)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', req_key, '-inf', cutoff)
  local freed = 0
  for i = 1, #expired, 500 do  -- chunks keep unpack() within Lua's stack limit
    local chunk = {unpack(expired, i, math.min(i + 499, #expired))}
    for _, v in ipairs(redis.call('HMGET', tok_key, unpack(chunk))) do
      freed = freed + (tonumber(v) or 0)
    end
    redis.call('HDEL', tok_key, unpack(chunk))
  end
  redis.call('HINCRBY', tok_key, SUM, int(-freed))
end

local count = redis.call('ZCARD', req_key)
local used = 0
if count == 0 then
  redis.call('DEL', tok_key)  -- also clears any drift in the running total
else
  used = tonumber(redis.call('HGET', tok_key, SUM)) or 0
end

local exceeded = 0
if rpm < 1 then exceeded = 1
elseif tokens > tpm then exceeded = 2
elseif count + 1 > rpm then exceeded = 1
elseif used + tokens > tpm then exceeded = 2 end

local count_after, used_after = count, used
if exceeded == 0 and record then
  redis.call('ZADD', req_key, int(now), id)
  redis.call('HSET', tok_key, id, int(tokens))
  redis.call('HINCRBY', tok_key, SUM, int(tokens))
  -- Every entry is gone one window after the newest, so an idle account costs nothing.
  local ttl = int(window / 1000 + 1000)
  redis.call('PEXPIRE', req_key, ttl)
  redis.call('PEXPIRE', tok_key, ttl)
  count_after, used_after = count + 1, used + tokens
end

local reset_requests = 0
if count_after - rpm >= 0 then
  local e = redis.call('ZRANGE', req_key, count_after - rpm, count_after - rpm, 'WITHSCORES')
  if #e > 0 then reset_requests = tonumber(e[2]) + shift end
end

local reset_tokens = 0
if used_after > 0 then
  -- The newest entry almost always has tokens: read it alone first (a page of 100 and its
  -- HMGET took ~90 µs of Redis time on every admission), then pages of 100.
  local start, size, found = 0, 1, false
  while not found do
    local e, vals = page('ZREVRANGE', start, size)
    if #e == 0 then break end
    for i, v in ipairs(vals) do
      if (tonumber(v) or 0) > 0 then
        reset_tokens, found = tonumber(e[2 * i]) + shift, true
        break
      end
    end
    start, size = start + size, 100
  end
end

local retry = -1
if exceeded ~= 0 and rpm >= 1 and tokens <= tpm then
  local need_requests, need_tokens = count + 1 - rpm, used + tokens - tpm
  local dropped, freed, start = 0, 0, 0
  retry = 0
  while true do
    local e, vals = page('ZRANGE', start, 100)
    if #e == 0 then break end
    local done = false
    for i, v in ipairs(vals) do
      dropped, freed = dropped + 1, freed + (tonumber(v) or 0)
      if dropped >= need_requests and freed >= need_tokens then
        retry, done = tonumber(e[2 * i]) + shift, true
        break
      end
    end
    if done then break end
    start = start + 100
  end
end

return {exceeded, count, used, reset_requests, reset_tokens, retry}
"""

# ARGV: reservation id, actual tokens, window_us, now_us (-1: server TIME). Returns 1 if corrected.
SETTLE = _COMMON + """
local window = tonumber(ARGV[3])
return correct(ARGV[1], tonumber(ARGV[2]), server_now(tonumber(ARGV[4])), window)
"""
