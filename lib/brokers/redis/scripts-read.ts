/**
 * The read functions of the Function library (see scripts.ts, which puts them
 * in the library after the helpers they call: begin, fmt): where a channel's
 * kept history begins (`kept`), whether it holds everything after a position
 * (`whole`), and the atomic read of a partition's channels that replays and
 * heads use. `sse_relay_read_v2` also says, per channel, where its kept
 * history begins, so a caller can place a reset there (and the hub start every
 * partition of a stream there at once: one reset, not one per partition);
 * `sse_relay_read_v1` is the previous release's reply, still served during a
 * rolling upgrade.
 */

/** The Lua of `kept`, `whole`, `sse_relay_read_v1` and `sse_relay_read_v2`. */
export function readFunctions(): string {
  return `
-- The seq after which stream 'key' (channel 'ch') holds every event of this epoch (b..s): b,
-- or later when something after b was trimmed, deleted from outside, or is outside the window
-- of its newest publish. Where its kept history begins.
local function kept(D, key, ch, b, s)
  local dropped = tonumber(redis.call('HGET', D, ch) or '0')
  local len = redis.call('XLEN', key)
  if len == 0 then
    -- no stream, but the channel had one in this epoch: its history is gone (deleted or
    -- evicted from outside); complete only for a reader that has everything up to the head
    if dropped < s and redis.call('HEXISTS', D, '+' .. ch) == 1 then dropped = s end
  else
    -- the window of the newest publish: entries older than its history are gone
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1][2]
    local h
    for j = 1, #newest, 2 do if newest[j] == 'h' then h = tonumber(newest[j + 1]) end end
    if h and len > h then
      local gone = redis.call('XRANGE', key, '-', '+', 'COUNT', len - h)
      local mark = tonumber(string.match(gone[#gone][1], '^%d+'))
      if mark and mark > dropped then dropped = mark end
    end
  end
  return math.min(s, math.max(b, dropped))
end

-- Whether stream 'key' (channel 'ch') holds everything after seq 'after' of this epoch (b..s).
local function whole(D, key, ch, after, b, s)
  if after < b or after > s then return false end
  return kept(D, key, ch, b, s) <= after
end

-- KEYS[1] B, KEYS[2] B!d, KEYS[3..] streams
-- ARGV[1] floor epoch, [2] floor seq, [3] new epoch, [4] expected epoch ('' = none;
-- when set and different, every stream is read from the epoch's start), [5] most entries per
-- stream (0 = all), [6..] seq to read after, per stream
-- reply v1: {epoch, head, base, per stream: complete (1/0), entries}
-- reply v2: {epoch, head, base, per stream: complete (1/0), the seq its kept history begins after, entries}
local function read(keys, args, marks)
  local B = keys[1]
  local e, s, b = begin(B, args[1], tonumber(args[2]), args[3])
  local out = {e, fmt(s), fmt(b)}
  local rebase = args[4] ~= '' and args[4] ~= e
  local n = #B + 2
  for i = 3, #keys do
    local key = keys[i]
    local after = tonumber(args[i + 3])
    if rebase then after = b end
    local ch = string.sub(key, n)
    local ok, entries, k, complete = 0, {}, 0, false
    if marks then
      k = kept(keys[2], key, ch, b, s)
      complete = after >= b and after <= s and k <= after
    else
      complete = whole(keys[2], key, ch, after, b, s)
    end
    if complete then
      ok = 1
      if args[5] == '0' then
        entries = redis.call('XRANGE', key, '(' .. fmt(after) .. '-0', '+')
      else
        entries = redis.call('XRANGE', key, '(' .. fmt(after) .. '-0', '+', 'COUNT', args[5])
      end
    end
    out[#out + 1] = ok
    if marks then out[#out + 1] = fmt(k) end
    out[#out + 1] = entries
  end
  return out
end
local function read_v1(keys, args) return read(keys, args, false) end
local function read_v2(keys, args) return read(keys, args, true) end

`;
}
