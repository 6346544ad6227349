/**
 * The catch-up page function of the Function library (see scripts.ts, which puts
 * it in the library after the helpers it calls: begin, kept, whole, fmt): one page of
 * a catch-up after a lost subscriber connection, bounded in entries and bytes
 * so that one call never holds Redis for long, whatever the backlog and the
 * number of channels (catch-up.ts pages through it).
 */

/** Entries read per XRANGE while a page is filled (what Lua holds beyond the budget at most). */
const CHUNK = 32;

/** The Lua of `sse_relay_page_v1` and `sse_relay_page_v2`. */
export function pageFunction(): string {
  return `
-- One page of a catch-up: the same streams and checks as read, but only the entries up to a
-- cut 'to', the same for every stream, so that the pages together deliver the partition's
-- events in seq order. 'to' is at most [5] seqs past the lowest seq read after (of the whole
-- streams), so a page holds at most that many entries whatever the number of streams, and it
-- moves down to the entry that takes the page past [6] bytes (that entry is kept: every page
-- moves on). to = head: nothing of these streams is left after the page.
-- KEYS as read; ARGV[1..4] as read, [5] most seqs a page spans (>= 1), [6] byte budget,
-- [7..] seq to read after, per stream
-- reply v1: {epoch, head, base, to, per stream: complete (1/0), entries in (after, to]}
-- reply v2: {epoch, head, base, to, per stream: complete (1/0), k, entries in (max(after, k), to]}
-- where k is the seq its kept history begins after: v2 reads a stream that is not complete
-- (trimmed past its position) from there, v1 not at all.
local function page(keys, args, marks)
  local B = keys[1]
  local e, s, b = begin(B, args[1], tonumber(args[2]), args[3])
  local rebase = args[4] ~= '' and args[4] ~= e
  local span, budget = tonumber(args[5]), tonumber(args[6])
  local n = #B + 2
  local afters, ok, ks, reads = {}, {}, {}, {}
  local from = s
  for i = 3, #keys do
    local after = tonumber(args[i + 4])
    if rebase then after = b end
    if marks then
      local k = kept(keys[2], keys[i], string.sub(keys[i], n), b, s)
      ks[i] = k
      ok[i] = after >= b and after <= s and k <= after
      if not ok[i] and after < k then after = k end -- trimmed: what is kept
      reads[i] = after >= b and after <= s
    else
      ok[i] = whole(keys[2], keys[i], string.sub(keys[i], n), after, b, s)
      reads[i] = ok[i]
    end
    afters[i] = after
    if reads[i] and after < from then from = after end
  end
  local to = math.min(s, from + span)
  local lists, sizes, seqs = {}, {}, {}
  local bytes = 0
  for i = 3, #keys do
    local list, size, seq = {}, {}, {}
    lists[i], sizes[i], seqs[i] = list, size, seq
    local lo = afters[i]
    while reads[i] and lo < to do
      local chunk = redis.call('XRANGE', keys[i], '(' .. fmt(lo) .. '-0', fmt(to) .. '-0', 'COUNT', ${CHUNK})
      for _, entry in ipairs(chunk) do
        local q = tonumber(string.match(entry[1], '^%d+'))
        if q > to then break end
        local z = #entry[1]
        for _, f in ipairs(entry[2]) do z = z + #f end
        list[#list + 1], size[#size + 1], seq[#seq + 1] = entry, z, q
        bytes = bytes + z
        if bytes > budget and q < to then
          -- over the budget: the page ends at this entry; what was kept after it is left to the next
          to = q
          for j = 3, i - 1 do
            local sq, sz, l = seqs[j], sizes[j], lists[j]
            while #sq > 0 and sq[#sq] > to do
              bytes = bytes - sz[#sz]
              sq[#sq], sz[#sz], l[#l] = nil, nil, nil
            end
          end
        end
        lo = q
      end
      if #chunk < ${CHUNK} then break end
    end
  end
  local out = {e, fmt(s), fmt(b), fmt(to)}
  for i = 3, #keys do
    out[#out + 1] = ok[i] and 1 or 0
    if marks then out[#out + 1] = fmt(ks[i]) end
    out[#out + 1] = lists[i]
  end
  return out
end
local function page_v1(keys, args) return page(keys, args, false) end
local function page_v2(keys, args) return page(keys, args, true) end

`;
}
