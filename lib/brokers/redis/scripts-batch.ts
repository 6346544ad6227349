/**
 * The batch functions of the Function library (see scripts.ts, which puts
 * them in the library after the helpers they call: begin, put, trim_touched,
 * fmt, now_ms, bad, USER_TTL): many publishes of one partition in one call,
 * numbered consecutively, stored, trimmed once per stream and sent live.
 */

/** The Lua of `sse_relay_batch_v2` (packed events) and `sse_relay_batch_v1` (the previous layout). */
export function batchFunctions(expired: string): string {
  return `
-- The broker's batch call, in two argument layouts (v2: one packed argument; v1: three
-- arguments per event, kept for brokers of the previous release during a rolling upgrade).
-- KEYS[1] B, KEYS[2] B!d, KEYS[3] B!b:<call id>, KEYS[4..] streams and caller key marks
-- ARGV[1] floor epoch, [2] floor seq, [3] new epoch, [4] deadline (Redis ms, 0 = none),
-- [5] call mark lifetime (ms), [6] history, then the events:
--   v1: per event key index, data, options
--   v2: ARGV[7], per event: u16 key index, u32 data bytes, u32 options bytes (little endian),
--       the data, the options
-- (options: '' or lines '<tag><value>\\n': e event, c coalesce, h history, m caller key mark index)
-- reply: {epoch, first seq} when the seqs are consecutive, else {epoch, seq...}; for a call
-- already done, the same as one string
local function batch(keys, args, kis, datas, opts)
  local done = redis.call('GET', keys[3])
  if done then
    -- asked again (its reply was lost): renewing the mark is a write, so a WAIT that follows on
    -- this connection also covers the first run's writes, made on the connection that was lost
    redis.call('PEXPIRE', keys[3], args[5])
    return done
  end
  local deadline = tonumber(args[4])
  if deadline > 0 and now_ms() > deadline then
    return redis.error_reply('${expired} the deadline passed before Redis ran the call; nothing was stored')
  end
  local B = keys[1]
  local e, s, b = begin(B, args[1], tonumber(args[2]), args[3])
  local s0 = s
  local out -- the seqs, once they are not consecutive (a caller's key seen before)
  local n = #B + 2
  local hist0 = args[6]
  local h0 = tonumber(hist0)
  local touched = {}
  local live = e .. '\\n'
  for i = 1, #kis do
    local key = keys[kis[i]]
    local opt = opts[i]
    local seq
    if opt == '' and h0 > 0 then
      -- the common case, put() inlined: no event name, no coalesce key, the call's history
      s = s + 1
      seq = fmt(s)
      local data = datas[i]
      local added = redis.pcall('XADD', key, seq, 'd', data, 'h', hist0)
      if type(added) == 'table' and added.err then
        redis.call('DEL', key)
        redis.call('XADD', key, seq, 'd', data, 'h', hist0)
        redis.call('HSET', B .. '!d', string.sub(key, n), fmt(s - 1))
      end
      local t = touched[key]
      if t then t[2] = t[2] + 1 else touched[key] = {h0, 1, s} end
      redis.call('SPUBLISH', key, live .. seq .. '\\n-\\n-\\n' .. data)
    else
      local ev, co, mark
      local hist = hist0
      if opt ~= '' then
        for tag, val in string.gmatch(opt, '(%a)([^\\n]*)\\n') do
          if tag == 'e' then ev = val elseif tag == 'c' then co = val elseif tag == 'h' then hist = val
          elseif tag == 'm' then mark = keys[tonumber(val)] end
        end
        if mark then
          local prior = redis.call('GET', mark)
          if prior then
            seq = string.match(prior, ' (%d+)$')
            if not out then
              out = {e}
              for j = 1, i - 1 do out[j + 1] = fmt(s0 + j) end
            end
          end
        end
      end
      if not seq then
        s = s + 1
        seq = put(B, e, s, key, n, datas[i], ev, co, hist, touched)
        if mark then redis.call('SET', mark, e .. ' ' .. seq, 'EX', USER_TTL) end
      end
    end
    if out then out[i + 1] = seq end
  end
  trim_touched(B, n, touched)
  redis.call('HSET', B, 's', fmt(s))
  if not out then out = {e, fmt(s0 + 1)} end
  redis.call('SET', keys[3], table.concat(out, ' '), 'PX', args[5])
  return out
end

local function batch_v1(keys, args)
  local kis, datas, opts = {}, {}, {}
  local j = 0
  if #args < 9 then return bad('batch: no events') end
  for i = 7, #args, 3 do
    j = j + 1
    kis[j] = tonumber(args[i]); datas[j] = args[i + 1]; opts[j] = args[i + 2]
  end
  return batch(keys, args, kis, datas, opts)
end

-- Everything is decoded and checked before anything is written: a malformed call stores nothing.
local function batch_v2(keys, args)
  local packed = args[7]
  if #args ~= 7 or not packed then return bad('batch: expects 7 arguments') end
  local kis, datas, opts = {}, {}, {}
  local pos, plen, j, nk = 1, #packed, 0, #keys
  if plen == 0 then return bad('batch: no events') end
  while pos <= plen do
    if pos + 9 > plen then return bad('batch: truncated event header') end
    local ki, dl, ol = struct.unpack('<HI4I4', packed, pos)
    local p2 = pos + 10
    pos = p2 + dl + ol
    if pos - 1 > plen then return bad('batch: truncated event') end
    if ki < 4 or ki > nk then return bad('batch: key index out of range') end
    j = j + 1
    kis[j] = ki
    datas[j] = string.sub(packed, p2, p2 + dl - 1)
    if ol > 0 then opts[j] = string.sub(packed, p2 + dl, pos - 1) else opts[j] = '' end
  end
  return batch(keys, args, kis, datas, opts)
end
`;
}
