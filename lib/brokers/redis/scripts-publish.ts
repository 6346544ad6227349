/**
 * The public function of the Function library (see scripts.ts, which puts it
 * in the library after the helpers it calls: begin, put, trim_touched, fnv,
 * fmt, bad, TAGS, TAGS_BY, USER_TTL): `sse_relay_publish_v1`, one event from
 * any Redis client, with the checks a caller outside the broker needs (the
 * key's tag, the layout in use, a slot on the move).
 */

/** The Lua of `sse_relay_publish_v1` (and the helpers only it uses). */
export function publishFunction(maxData: number, history: number): string {
  return `-- nil when keys of this call's slot, some of which the call did not declare, can all be used here
-- now; else the error to reply with. One multi-key EXISTS: while the slot migrates, the node it is
-- leaving refuses it (ASK) when one of them has gone, and the node it is going to, reached by
-- ASKING, refuses it (TRYAGAIN) when one of them has not arrived yet; a single-key EXISTS would be
-- served there and read as absent. Any other refusal (an ACL without EXISTS) is replied as it is.
local function unreachable(...)
  local r = redis.pcall('EXISTS', ...)
  if not (type(r) == 'table' and r.err) then return nil end
  if string.find(r.err, 'non local key', 1, true) then
    return redis.error_reply('TRYAGAIN sse-relay: the partition is moving to another node; try again')
  end
  return r
end

-- The key of channel ch under prefix in the layout (number of partitions) in use here: the first
-- whose partition state for ch exists (on a cluster only ch's slot can be asked, and that is the
-- given layout's), else the layout of n partitions (nil when n is nil).
local function right_key(prefix, ch, n)
  local h = fnv(ch)
  for m = 1, #TAGS_BY do
    local base = prefix .. '{' .. TAGS_BY[m][h % m + 1] .. '}'
    if redis.pcall('EXISTS', base) == 1 then return base .. ':' .. ch end
  end
  if n then return prefix .. '{' .. TAGS_BY[n][h % n + 1] .. '}:' .. ch end
end

local function valid_channel(ch)
  return #ch >= 1 and #ch <= 200 and string.find(ch, '^[A-Za-z0-9_.:%-]+$') ~= nil
end

-- KEYS[1] <prefix>{<tag>}:<channel>
-- ARGV data [event [coalesce [history [idempotency-key [max-bytes]]]]] ('' = none)
local function publish(keys, args)
  if #keys ~= 1 then return bad('expects 1 key: <prefix>{<tag>}:<channel>') end
  local prefix, tag, ch = string.match(keys[1], '^(.-){([^}]*)}:(.*)$')
  if not tag then return bad('the key must be <prefix>{<tag>}:<channel>') end
  if not valid_channel(ch) then return bad('invalid channel name (^[A-Za-z0-9_.:-]{1,200}$)') end
  local t = TAGS[tag]
  if not t then
    local right = right_key(prefix, ch, nil)
    if right then return bad('channel ' .. ch .. ' belongs to key ' .. right) end
    return bad('unknown partition tag {' .. tag .. '}: channel ' .. ch .. ' belongs to key ' .. prefix .. '{0}:' .. ch
      .. ' on one Redis, ' .. prefix .. '{' .. TAGS_BY[8][fnv(ch) % 8 + 1] .. '}:' .. ch .. ' on a cluster')
  end
  if TAGS_BY[t[1]][fnv(ch) % t[1] + 1] ~= tag then
    return bad('channel ' .. ch .. ' belongs to key ' .. right_key(prefix, ch, t[1]))
  end
  local data, ev, co = args[1], args[2] or '', args[3] or ''
  local hist, ukey, maxb = args[4] or '', args[5] or '', args[6] or ''
  if data == nil then return bad('expects the data argument') end
  if #args > 6 then return bad('too many arguments') end
  local limit = ${maxData}
  if maxb ~= '' then
    local m = tonumber(maxb)
    if not m or m < 0 or m % 1 ~= 0 then return bad('max-bytes must be a non-negative integer') end
    if m < limit then limit = m end
  end
  if #data > limit then return bad('data is larger than ' .. fmt(limit) .. ' bytes') end
  if string.find(ev, '[\\r\\n%z]') then return bad('the event name contains CR, LF or NUL') end
  if string.find(co, '[\\r\\n%z]') then return bad('the coalesce key contains CR, LF or NUL') end
  if hist == '' then hist = ${history} else hist = tonumber(hist) end
  if not hist or hist < 0 or hist % 1 ~= 0 or hist > 1000000 then
    return bad('history must be an integer 0..1000000')
  end
  local B = prefix .. '{' .. tag .. '}'
  -- This call declares one key and reaches two more of its slot (B, B!d): all three asked first,
  -- so that while the slot migrates a call is refused whole (TRYAGAIN) instead of failing
  -- half-way, or starting a partition of its own on the node the slot is going to.
  local refused = unreachable(B, B .. '!d', keys[1])
  if refused then return refused end
  if redis.call('EXISTS', B) == 0 then
    -- a partition never written: not when another layout's key of this channel is in use here
    local right = right_key(prefix, ch, t[1])
    if right ~= keys[1] then return bad('channel ' .. ch .. ' belongs to key ' .. right) end
  end
  local e, s, b = begin(B, '', 0, '')
  local ukeyname
  if ukey ~= '' then
    ukeyname = B .. '!k:' .. ch .. ' ' .. ukey
    local done = redis.call('GET', ukeyname)
    if done then return {string.match(done, '^(%S+) (%d+)$')} end
  end
  s = s + 1
  if ev == '' then ev = nil end
  if co == '' then co = nil end
  local touched = {}
  put(B, e, s, keys[1], #B + 2, data, ev, co, fmt(hist), touched)
  trim_touched(B, #B + 2, touched)
  redis.call('HSET', B, 's', fmt(s))
  if ukeyname then redis.call('SET', ukeyname, e .. ' ' .. fmt(s), 'EX', USER_TTL) end
  return {e, fmt(s)}
end

`;
}
