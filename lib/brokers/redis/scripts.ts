/**
 * The Redis Function library: publishing and reading history, atomically, in
 * Redis. Loaded by every RedisBroker (`FUNCTION LOAD REPLACE`, on connect and
 * again whenever Redis says the function is missing), and callable by any
 * Redis client: `sse_relay_publish_v1` is the public entry point (see README,
 * "Publishing from any Redis client"); the broker uses `sse_relay_batch_v2`,
 * which runs the same per-event code for many events at once (its Lua is in
 * scripts-batch.ts).
 *
 * Rewind fence: calls from a broker carry the newest position it has seen in
 * the partition (its floor). When Redis holds that epoch but a lower seq
 * (restarted from an older snapshot, a replica promoted behind its master),
 * the function starts a new epoch whose history begins at the stored seq.
 */
import { batchFunctions } from './scripts-batch';
import { pageFunction } from './scripts-page';
import { readFunctions } from './scripts-read';
import { publishFunction } from './scripts-publish';
import { MAX_PARTITIONS, TAGS } from './partitions';

/** Bump when the stored layout or a function's contract changes; the name is part of the API. */
export const LIBRARY = 'sse_relay_v1';
export const FN_PUBLISH = 'sse_relay_publish_v1';
export const FN_BATCH = 'sse_relay_batch_v2';
/** The previous release's batch call (three arguments per event), still served during a rolling upgrade. */
export const FN_BATCH_V1 = 'sse_relay_batch_v1';
/** An atomic read of a partition's channels; its reply says where each one's kept history begins. */
export const FN_READ = 'sse_relay_read_v2';
/** The previous release's read (no kept marks), still served during a rolling upgrade. */
export const FN_READ_V1 = 'sse_relay_read_v1';
/** One page of a catch-up (see page() in the Lua): a trimmed channel is read from where its kept history begins. */
export const FN_PAGE = 'sse_relay_page_v2';
/** The previous release's page (a trimmed channel not read, no kept marks), still served during a rolling upgrade. */
export const FN_PAGE_V1 = 'sse_relay_page_v1';

/** What the public function accepts by default (bytes of data); callers may lower it, never raise it. */
export const DEFAULT_MAX_DATA = 1024 * 1024;
export const DEFAULT_HISTORY = 1000;
/** Lifetime of a caller's idempotencyKey. */
export const USER_KEY_TTL_S = 600;
export const EXPIRED = 'SSERELAY_EXPIRED';

function tagTable(): string {
  const rows: string[] = [];
  for (let n = 1; n <= MAX_PARTITIONS; n++) {
    TAGS[n]!.forEach((tag, p) => rows.push(`['${tag}'] = {${n}, ${p}}`));
  }
  return '{' + rows.join(', ') + '}';
}

function tagsBy(): string {
  const rows: string[] = [];
  for (let n = 1; n <= MAX_PARTITIONS; n++) rows.push('{' + TAGS[n]!.map((t) => `'${t}'`).join(', ') + '}');
  return '{' + rows.join(', ') + '}';
}

export const LIBRARY_SOURCE = `#!lua name=${LIBRARY}
local TAGS = ${tagTable()}
local USER_TTL = ${USER_KEY_TTL_S}

local function fmt(n) return string.format('%d', n) end

local function fnv(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, string.byte(s, i))
    if h < 0 then h = h + 4294967296 end
    h = (h * 403 + (h % 256) * 16777216) % 4294967296
  end
  return h
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function bad(msg) return redis.error_reply('ERR sse-relay: ' .. msg) end

-- This node's replication id as of the last time this library asked (INFO replication), kept
-- for the library's life: a restart, a full resync or FUNCTION LOAD starts it afresh.
local REPLID

-- The partition's epoch, newest seq and base, creating or fencing them.
local function begin(B, floor_e, floor_s, new_e)
  local m = redis.call('HMGET', B, 'e', 's', 'b', 'r')
  local e, s, b, r = m[1], tonumber(m[2] or '0'), tonumber(m[3] or '0'), m[4]
  -- the epoch to start when one is needed: the caller's, or one from Redis' clock
  local function fresh()
    if new_e == '' then
      local t = redis.call('TIME')
      new_e = 't' .. t[1] .. t[2]
    end
    return new_e
  end
  if not e then
    e, s, b = fresh(), 0, 0
    redis.call('DEL', B .. '!d')
    redis.call('HSET', B, 'e', e, 's', '0', 'b', '0')
  elseif floor_e ~= '' and e == floor_e and s < floor_s then
    -- Redis went back behind a position it acknowledged: nothing before is vouched for.
    e, b = fresh(), s
    redis.call('HSET', B, 'e', e, 'b', fmt(b))
  end
  if r ~= REPLID or not r then
    local info = redis.call('INFO', 'replication')
    local id, id2 = string.match(info, 'master_replid:(%x+)'), string.match(info, 'master_replid2:(%x+)')
    REPLID = id
    if r ~= id then
      if r and id2 == r and (new_e == '' or e ~= new_e) then
        -- This node was a replica of the node that last wrote the partition and has been promoted
        -- since (its replid2 is that node's id): the old master may have acknowledged writes that
        -- never reached it, and a writer that never saw them would be given their seqs again.
        -- Nothing before is vouched for. (A slot migrated here, or a restart, is not this.)
        e, b = fresh(), s
        redis.call('HSET', B, 'e', e, 'b', fmt(b))
      end
      redis.call('HSET', B, 'r', id)
    end
  end
  return e, s, b
end

-- History: a channel's stream keeps up to hist + hist/8 entries; past that one XTRIM keeps
-- hist + 1, and B!d records the seq of the oldest left (the newest no longer in the window).
-- Each entry carries its hist ('h'), so reads apply the window exactly whatever was trimmed.
-- n is where the channel name starts in the key; len the stream's length.
local function trim(B, key, n, h, len)
  if len > h + math.max(8, math.floor(h / 8)) then
    redis.call('XTRIM', key, 'MAXLEN', h + 1)
    local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
    redis.call('HSET', B .. '!d', string.sub(key, n), string.match(first[1][1], '^%d+'))
  end
end

-- Stores one event and sends it live; returns its seq as a string. History 0 keeps no stream at all, only the mark. The trim
-- check is left to the caller (once per stream per call: see trim_touched), through touched:
-- per stream, {history, events this call added, the first one's seq}.
local function put(B, e, s, key, n, data, ev, co, hist, touched)
  local ss = fmt(s)
  local h = tonumber(hist)
  if h == 0 then
    redis.call('DEL', key)
    redis.call('HSET', B .. '!d', string.sub(key, n), ss)
    redis.call('HDEL', B .. '!d', '+' .. string.sub(key, n)) -- no stream on purpose: the mark says what is gone
    touched[key] = nil
  else
    local id = ss -- XADD takes <seq> as <seq>-0
    local added
    if ev or co then
      local f = {'d', data, 'h', hist}
      if ev then f[5] = 'e'; f[6] = ev end
      if co then f[#f + 1] = 'c'; f[#f + 1] = co end
      added = redis.pcall('XADD', key, id, unpack(f))
      if type(added) == 'table' and added.err then
        -- not a stream of ours (or ids ahead of ours): start it again, nothing before is replayable
        redis.call('DEL', key)
        redis.call('XADD', key, id, unpack(f))
        redis.call('HSET', B .. '!d', string.sub(key, n), fmt(s - 1))
      end
    else
      added = redis.pcall('XADD', key, id, 'd', data, 'h', hist)
      if type(added) == 'table' and added.err then
        redis.call('DEL', key)
        redis.call('XADD', key, id, 'd', data, 'h', hist)
        redis.call('HSET', B .. '!d', string.sub(key, n), fmt(s - 1))
      end
    end
    local t = touched[key]
    if t then t[2] = t[2] + 1 else touched[key] = {h, 1, s} end
  end
  redis.call('SPUBLISH', key, e .. '\\n' .. ss .. '\\n' .. (ev and ('=' .. ev) or '-') .. '\\n' .. (co and ('=' .. co) or '-') .. '\\n' .. data)
  return ss
end

-- Once per stream a call wrote: a stream no longer than what the call added began in this call.
-- B!d's field '+<channel>' remembers that the channel has had a stream in this epoch (no channel
-- name starts with '+'; the field lives in B!d because every call declares that key, and a key
-- it did not declare could fail mid-call while its slot migrates). If it had one before, what
-- that held is gone (deleted or evicted from outside) and B!d's mark says so. Then the trim check.
local function trim_touched(B, n, touched)
  for key, t in pairs(touched) do
    local len = redis.call('XLEN', key)
    if len == t[2] then
      local ch = string.sub(key, n)
      if redis.call('HSETNX', B .. '!d', '+' .. ch, fmt(t[3])) == 0 then
        redis.call('HSET', B .. '!d', ch, fmt(t[3] - 1))
      end
    end
    trim(B, key, n, t[1], len)
  end
end

${publishFunction(DEFAULT_MAX_DATA, DEFAULT_HISTORY)}${batchFunctions(EXPIRED)}
${readFunctions()}${pageFunction()}redis.register_function(FN_PUBLISH_NAME, publish)
redis.register_function(FN_BATCH_NAME, batch_v2)
redis.register_function(FN_BATCH_V1_NAME, batch_v1)
redis.register_function(FN_READ_NAME, read_v2)
redis.register_function(FN_READ_V1_NAME, read_v1)
redis.register_function(FN_PAGE_NAME, page_v2)
redis.register_function(FN_PAGE_V1_NAME, page_v1)
`
  .replace('FN_PUBLISH_NAME', `'${FN_PUBLISH}'`)
  .replace('FN_BATCH_NAME', `'${FN_BATCH}'`)
  .replace('FN_BATCH_V1_NAME', `'${FN_BATCH_V1}'`)
  .replace('FN_READ_NAME', `'${FN_READ}'`)
  .replace('FN_READ_V1_NAME', `'${FN_READ_V1}'`)
  .replace('FN_PAGE_NAME', `'${FN_PAGE}'`)
  .replace('FN_PAGE_V1_NAME', `'${FN_PAGE_V1}'`)
  .replace('local USER_TTL', `local TAGS_BY = ${tagsBy()}\nlocal USER_TTL`);
