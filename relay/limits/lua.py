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
# a slice to take beside the entry (relay.limits.slices): its id ('' for none), requests, tokens,
# the requests and tokens that must stay free after it, its life in µs; then any settlements of
# the key still to apply, as pairs of reservation id and actual tokens (the backend sends them with
# the key's next admission, saving a round trip each).
# Returns {exceeded, used_requests, used_tokens, reset_requests_us, reset_tokens_us, retry_us,
# slice granted (1/0), now_us} with retry_us = -1 for "none".
ADMIT = _COMMON + """
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window, id = tonumber(ARGV[4]), ARGV[5]
local now = server_now(tonumber(ARGV[6]))
local record = ARGV[7] ~= '0'
local slice_id, slice_requests, slice_tokens = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local room_requests, room_tokens, slice_life = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local shift = window - now  -- an entry admitted at t leaves the window t + shift from now
local cutoff = int(now - window)

for i = 14, #ARGV, 2 do correct(ARGV[i], tonumber(ARGV[i + 1]), now, window) end

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

-- The slice: its entries scored at the end of its life (none leaves before a request it admits
-- would), its tokens on its first entry, so that they too leave with the window if never returned.
local granted = 0
if exceeded == 0 and record and slice_id ~= ''
    and rpm - count_after >= room_requests and tpm - used_after >= room_tokens then
  local at, members = int(now + slice_life), {}
  for i = 1, slice_requests do
    members[#members + 1] = at
    members[#members + 1] = slice_id .. ':' .. i
  end
  redis.call('ZADD', req_key, unpack(members))
  redis.call('HSET', tok_key, slice_id .. ':1', int(slice_tokens))
  redis.call('HINCRBY', tok_key, SUM, int(slice_tokens))
  local ttl = int((window + slice_life) / 1000 + 1000)
  redis.call('PEXPIRE', req_key, ttl)
  redis.call('PEXPIRE', tok_key, ttl)
  granted = 1
end

return {exceeded, count, used, reset_requests, reset_tokens, retry, granted, now}
"""

# ARGV: slice id, its requests, window_us, now_us (-1: server TIME), then for each entry spent:
# its number, admission time (µs) and tokens. The spent entries take their real time and tokens,
# the others leave; nothing is done if the slice already left with the window. Returns 1 if done.
RETURN_SLICE = _COMMON + """
local id, requests, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = server_now(tonumber(ARGV[4]))
local first = id .. ':1'
local at = redis.call('ZSCORE', req_key, first)
if not at or tonumber(at) <= now - window then return 0 end
local held = tonumber(redis.call('HGET', tok_key, first)) or 0
local spent, scores, tokens, total = {}, {}, {}, 0
for i = 5, #ARGV, 3 do
  local member = id .. ':' .. ARGV[i]
  spent[ARGV[i]] = true
  scores[#scores + 1] = ARGV[i + 1]
  scores[#scores + 1] = member
  tokens[#tokens + 1] = member
  tokens[#tokens + 1] = ARGV[i + 2]
  total = total + tonumber(ARGV[i + 2])
end
local unspent = {}
for i = 1, requests do
  if not spent[tostring(i)] then unspent[#unspent + 1] = id .. ':' .. i end
end
if #unspent > 0 then
  redis.call('ZREM', req_key, unpack(unspent))
  redis.call('HDEL', tok_key, unpack(unspent))
end
if #scores > 0 then
  redis.call('ZADD', req_key, unpack(scores))
  redis.call('HSET', tok_key, unpack(tokens))
end
redis.call('HINCRBY', tok_key, SUM, int(total - held))
return 1
"""

# ARGV: reservation id, actual tokens, window_us, now_us (-1: server TIME). Returns 1 if corrected.
SETTLE = _COMMON + """
local window = tonumber(ARGV[3])
return correct(ARGV[1], tonumber(ARGV[2]), server_now(tonumber(ARGV[4])), window)
"""
