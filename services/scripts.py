"""The queue's state changes as Lua scripts: each runs atomically inside Redis, so a job's
hash, its stream entry and its events never disagree, whatever crashes in between."""

from __future__ import annotations

# Shared helper: append a status event to a job's event stream and keep it bounded.
_EVENT = """
local function status_event(events, status, ttl, maxlen)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'status', 'status', status)
  redis.call('EXPIRE', events, ttl)
end
local function drop_entry(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
"""

SUBMIT = """
-- KEYS: job, idempotency, stream, index, context
-- ARGV: id, now, use_idempotency, context_blob, context_ttl, idempotency_ttl, field/value...
if ARGV[3] == '1' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {existing, 0} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {ARGV[1], 0} end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
local entry = redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', entry, unpack(fields))
if ARGV[4] ~= '' then redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[5]) end
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
if ARGV[3] == '1' then redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[6]) end
return {ARGV[1], 1}
"""

START = (
    _EVENT
    + """
-- KEYS: job, stream, dead, events, context
-- ARGV: entry, group, worker, now, max_attempts, ttl, maxlen
-- Returns {verdict, attempt}: anything but 'run' means the entry was dropped. With 'run'
-- come the context blob ('' when absent) and the job's fields, saving round trips.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then drop_entry(KEYS[2], ARGV[2], ARGV[1]); return {'gone', 0} end
if redis.call('HGET', KEYS[1], 'entry') ~= ARGV[1] then
  drop_entry(KEYS[2], ARGV[2], ARGV[1]); return {'stale', 0}
end
if status ~= 'queued' and status ~= 'running' then
  drop_entry(KEYS[2], ARGV[2], ARGV[1]); return {status, 0}
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[5]) then
  local err = 'gave up after ' .. attempts .. ' attempts (the worker was lost each time)'
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', err, 'finished_at', ARGV[4])
  redis.call('XADD', KEYS[3], '*', 'id', redis.call('HGET', KEYS[1], 'id'), 'error', err)
  drop_entry(KEYS[2], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  status_event(KEYS[4], 'failed', ARGV[6], ARGV[7])
  return {'dead', attempts}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'started_at', ARGV[4])
redis.call('HDEL', KEYS[1], 'retry_at')
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
status_event(KEYS[4], 'running', ARGV[6], ARGV[7])
local reply = {'run', attempts, redis.call('GET', KEYS[5]) or ''}
for _, item in ipairs(redis.call('HGETALL', KEYS[1])) do reply[#reply + 1] = item end
return reply
"""
)

COMPLETE = (
    _EVENT
    + """
-- KEYS: job, stream, result, events, index
-- ARGV: entry, group, now, result_json, ttl, maxlen
-- The result is stored once (SET NX): a late duplicate from a lost worker changes nothing.
drop_entry(KEYS[2], ARGV[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
if status == 'done' or status == 'cancelled' then return status end
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5], 'NX')
redis.call('HSET', KEYS[1], 'status', 'done', 'finished_at', ARGV[3], 'progress', '1')
redis.call('HDEL', KEYS[1], 'error', 'retry_at')
redis.call('EXPIRE', KEYS[1], ARGV[5])
status_event(KEYS[4], 'done', ARGV[5], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[5]))
return 'done'
"""
)

FAIL = (
    _EVENT
    + """
-- KEYS: job, stream, delayed, dead, events
-- ARGV: entry, group, now, error, max_attempts, delay_s, ttl, maxlen, attempt
-- A failed attempt goes to the delayed set until its backoff ends, or, after the last
-- attempt, to the dead-letter stream. A report from an attempt that is no longer the
-- job's latest (its worker lost the job to a takeover) changes nothing, not even the entry.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'running' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[9] then
  return 'stale'
end
drop_entry(KEYS[2], ARGV[2], ARGV[1])
if not status then return 'gone' end
if status ~= 'running' then return status end
local attempts = tonumber(ARGV[9])
local id = redis.call('HGET', KEYS[1], 'id')
if attempts >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[4], 'finished_at', ARGV[3])
  redis.call('XADD', KEYS[4], '*', 'id', id, 'error', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  status_event(KEYS[5], 'failed', ARGV[7], ARGV[8])
  return 'failed'
end
local due = tonumber(ARGV[3]) + tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'status', 'queued', 'error', ARGV[4], 'retry_at', tostring(due),
  'entry', '')
redis.call('ZADD', KEYS[3], due, id)
status_event(KEYS[5], 'queued', ARGV[7], ARGV[8])
return 'retry'
"""
)

PROMOTE = """
-- KEYS: delayed, stream ; ARGV: now, limit, job key prefix
-- Moves jobs whose backoff has ended back into the stream.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local job = ARGV[3] .. id
  if redis.call('HGET', job, 'status') == 'queued' then
    local entry = redis.call('XADD', KEYS[2], '*', 'id', id)
    redis.call('HSET', job, 'entry', entry)
  end
end
return #ids
"""

CANCEL = (
    _EVENT
    + """
-- KEYS: job, delayed, events ; ARGV: id, now, ttl, maxlen
-- A queued job's stream entry stays; START drops it. A running job's worker sees the
-- status and stops.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'queued' and status ~= 'running' then return status end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
status_event(KEYS[3], 'cancelled', ARGV[3], ARGV[4])
return 'ok'
"""
)

RETRY = (
    _EVENT
    + """
-- KEYS: job, stream, context, events ; ARGV: id, ttl, maxlen
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'failed' and status ~= 'cancelled' then return status end
if redis.call('HGET', KEYS[1], 'has_context') == '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  return 'context-expired'
end
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', '0', 'progress', '0', 'entry', entry)
redis.call('HDEL', KEYS[1], 'error', 'finished_at', 'started_at', 'retry_at', 'worker')
redis.call('PERSIST', KEYS[1])
status_event(KEYS[4], 'queued', ARGV[2], ARGV[3])
return 'queued'
"""
)

EVENTS = """
-- ARGV: events key prefix, job key prefix, maxlen, then per job: id, text, done, total
-- One call writes a whole flush of streamed text and progress ('' text / total 0: none).
for i = 4, #ARGV, 4 do
  local id, text, total = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 3])
  local events = ARGV[1] .. id
  if text ~= '' then
    redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', 'type', 'text', 'text', text)
  end
  if total > 0 then
    local done = tonumber(ARGV[i + 2])
    redis.call('XADD', events, 'MAXLEN', '~', ARGV[3], '*', 'type', 'progress',
      'done', done, 'total', total)
    redis.call('HSET', ARGV[2] .. id, 'progress', string.format('%.4f', done / total))
  end
end
return (#ARGV - 3) / 4
"""
