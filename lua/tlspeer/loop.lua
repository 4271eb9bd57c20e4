-- The Lua half of tlspeer's event core: the live helper objects (servers
-- and clients of tls.listen/tls.connect, HTTPRequests, WebSocket helpers),
-- their sockets in the C loop (core._loop(): epoll, or poll(2)), timers,
-- and the budgets that keep every poll short.
--
-- A helper object (an "owner") registers its sockets with a token (itself,
-- or one of its connections); the C loop reports the tokens whose sockets
-- are ready, or whose worker job ended.  Each token is queued on its
-- owner; an owner's poll() steps only its queued tokens, tls.poll() steps
-- every owner's, in turn, until the time budget is spent: what is left
-- waits for the next poll.  Nothing that is not ready is looked at, so a
-- poll with nothing to do costs the same with 10 or 10,000 connections.
--
-- Owners provide: owner:_step(token, deadline) -> true when the token has
-- more to do at once (it is queued again); owner:_timeout(key).
local core = require "tlspeer.core"

local now = core._now
local M = {}

-- Budgets: seconds of work per poll() call, and bytes per connection step
-- (one TLS record).  A poll stops before a step that would, at the pace of
-- the last steps, end past its deadline: a call stays near its budget
-- instead of overshooting it by a step.  (`make bench`, frame section: with
-- these, no call reaches 0.5 ms at the 99th percentile.)
M.budget_time = 0.0003
M.budget_bytes = 16 * 1024

-- What one step has cost lately (seconds): the dearest recent one, slowly
-- forgotten, so that a poll stops early rather than late.
local step_cost = 0

local function step(owner, token, deadline)
  local t0 = now()
  local ok, more = pcall(owner._step, owner, token, deadline)
  local dt = now() - t0
  if dt > step_cost then step_cost = dt else step_cost = step_cost * 0.75 + dt * 0.25 end
  return ok, more
end

local loop                         -- core._loop(), made on first use
local function the_loop()
  if not loop then loop = core._loop() end
  return loop
end

------------------------------------------------------------- watching

function M.watch(obj, token)
  the_loop():watch(obj, token)
end

function M.unwatch(obj)
  if loop then loop:unwatch(obj) end
end

function M.want_write(obj, on)
  if loop then loop:want_write(obj, on) end
end

-- Queues a token on its owner now (data waits past its socket, or a step
-- stopped at its budget).
function M.wake(token)
  local owner = token._owner
  if owner then owner:_queue(token) end
end

--------------------------------------------------------------- timers

-- A binary heap of { at, owner, key }; cancelled entries are skipped.
local heap, count = {}, 0

local function up(i)
  while i > 1 do
    local p = math.floor(i / 2)
    if heap[p].at <= heap[i].at then break end
    heap[p], heap[i] = heap[i], heap[p]
    i = p
  end
end

local function down(i)
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= count and heap[l].at < heap[m].at then m = l end
    if r <= count and heap[r].at < heap[m].at then m = r end
    if m == i then return end
    heap[m], heap[i] = heap[i], heap[m]
    i = m
  end
end

-- Calls owner:_timeout(key) in a poll at or after `at`; returns the entry
-- (set entry.cancelled = true to cancel it).
function M.timer(at, owner, key)
  local e = { at = at, owner = owner, key = key }
  count = count + 1
  heap[count] = e
  up(count)
  return e
end

local function pop()
  local top = heap[1]
  heap[1] = heap[count]
  heap[count] = nil
  count = count - 1
  if count > 0 then down(1) end
  return top
end

-- The next live timer's time, or nil.
local function next_timer()
  while count > 0 and heap[1].cancelled do pop() end
  return count > 0 and heap[1].at or nil
end

local function fire_timers(t)
  while count > 0 and heap[1].at <= t do
    local e = pop()
    if not e.cancelled then e.owner:_timeout(e.key) end
  end
end

-- A listener whose accept failed for want of descriptors or memory
-- (EMFILE, ENFILE, ENOBUFS): the kernel reports it ready again at once, so
-- instead of spinning it leaves the loop for a tenth of a second (the
-- waiting clients stay queued in the kernel); the owner hears of it (its
-- "error" listeners, else stderr) at most once a second.  The owner's
-- _timeout(M.RESUME_ACCEPT) watches it again.
M.RESUME_ACCEPT = setmetatable({}, { __tostring = function() return "resume accepting" end })
M.ACCEPT_PAUSE = 0.1

function M.pause_accept(owner, listener, msg)
  M.unwatch(listener)
  M.timer(now() + M.ACCEPT_PAUSE, owner, M.RESUME_ACCEPT)
  local t = now()
  if owner._accept_said and t < owner._accept_said + 1 then return end
  owner._accept_said = t
  local text = ("tlspeer: cannot accept a connection (%s); accepting again in %g s")
    :format(tostring(msg), M.ACCEPT_PAUSE)
  local list = owner._events and owner._events.error
  if list and #list > 0 then
    for i = 1, #list do pcall(list[i], text) end
  else
    io.stderr:write(text, "\n")
  end
end

---------------------------------------------------------------- owners

-- Owners with queued work, in the order they got it.
local active, nactive = {}, 0

-- The queue of one owner: tokens in the order they became ready.
local Queue = {}

function M.owner(owner)
  owner._q, owner._qhead, owner._qtail = {}, 1, 0
  owner._queue = Queue.push
  owner._active = false
  return owner
end

function Queue.push(owner, token)
  if token._queued then return end
  token._queued = true
  local tail = owner._qtail + 1
  owner._qtail = tail
  owner._q[tail] = token
  if not owner._active then
    owner._active = true
    nactive = nactive + 1
    active[nactive] = owner
  end
end

local function take(owner)
  local head = owner._qhead
  if head > owner._qtail then return nil end
  local token = owner._q[head]
  owner._q[head] = nil
  owner._qhead = head + 1
  if owner._qhead > owner._qtail then owner._qhead, owner._qtail = 1, 0 end
  token._queued = false
  return token
end

-- Takes what the C loop reports (waiting up to `timeout`: 0 to only
-- look, nil for as long as it takes) and the timers due, onto the owners.
function M.collect(timeout)
  local t = next_timer()
  if timeout ~= 0 and nactive > 0 then timeout = 0 end
  if t and timeout ~= 0 then
    local left = t - now()
    if left < 0 then left = 0 end
    if timeout == nil or left < timeout then timeout = left end
  end
  local list, n = the_loop():wait(timeout)
  for i = 1, n do
    local token = list[i]
    local owner = token._owner
    if owner then owner:_queue(token) end
  end
  fire_timers(now())
end

-- Steps `owner`'s queued tokens until its queue is empty or the deadline
-- passes; a step that has more to do puts its token back at the end.
-- Returns whether work is left.
function M.work(owner, deadline)
  local first = true
  while first or now() + step_cost < deadline do
    first = false
    local token = take(owner)
    if not token then return false end
    local ok, more = step(owner, token, deadline)
    if not ok then
      owner:_report("poll", more)
    elseif more then
      owner:_queue(token)
    end
  end
  return owner._qhead <= owner._qtail
end

-- Drops `owner` from the active list when its queue is empty.
local function settle_active()
  local j = 0
  for i = 1, nactive do
    local o = active[i]
    active[i] = nil
    if o._qhead <= o._qtail then
      j = j + 1
      active[j] = o
    else
      o._active = false
    end
  end
  nactive = j
end

-- owner:poll(): one non-blocking step of that owner (what the C loop says
-- is ready is queued on every owner; only this one's is stepped).
function M.poll_owner(owner, budget)
  M.collect(0)
  M.work(owner, now() + (budget or owner._budget_time or M.budget_time))
  settle_active()
end

-- tls.poll(): one non-blocking step of every live helper object, taking
-- turns, within the time budget.
-- When every owner was last stepped (tls.poll, tls.run): a client waiting
-- for a server of the same script tells whether anybody polls it.
M.polled_at = -1

function M.poll(budget)
  M.polled_at = now()
  M.collect(0)
  local deadline = now() + (budget or M.budget_time)
  local round = 1
  while nactive > 0 do
    local any = false
    for i = 1, nactive do
      local o = active[i]
      if o._qhead <= o._qtail then
        any = true
        -- one token per owner per round: fair between owners
        M.work(o, 0)
      end
      if now() + step_cost >= deadline then break end
    end
    settle_active()
    if not any or now() + step_cost >= deadline then break end
    round = round + 1
  end
  return nactive == 0
end

-- Blocks (sleeping in the C loop, never spinning) until done() or
-- `timeout` seconds (nil: no limit), stepping `owner` (or every owner).
-- Returns done()'s value, or nil on timeout.
function M.run(owner, done, timeout)
  local deadline = timeout and now() + timeout
  while true do
    local v = done()
    if v then return v end
    local wait
    if deadline then
      wait = deadline - now()
      if wait <= 0 then return nil end
    end
    local has_work = owner and owner._qhead <= owner._qtail or (not owner and nactive > 0)
    M.collect(has_work and 0 or wait)
    if owner then M.work(owner, now() + (owner._budget_time or M.budget_time))
    else M.poll() end
    settle_active()
  end
end

-- tls.set_poll_budget(seconds, bytes): how long one poll() works at most,
-- and how many bytes one connection reads or writes in one step.
function M.set_budget(seconds, bytes)
  if type(seconds) ~= "number" or seconds <= 0 then
    error("bad argument #1 to 'set_poll_budget' (positive number of seconds expected)", 2)
  end
  if bytes ~= nil and (type(bytes) ~= "number" or bytes < 1024) then
    error("bad argument #2 to 'set_poll_budget' (at least 1024 bytes expected)", 2)
  end
  M.budget_time = seconds
  if bytes then M.budget_bytes = math.floor(bytes) end
end

-- tls.get_poll_budget() -> seconds, bytes
function M.get_budget()
  return M.budget_time, M.budget_bytes
end

return M
